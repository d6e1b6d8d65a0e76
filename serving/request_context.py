"""Pure ASGI around every request: id, admission, body limits and checks, activity, metrics, the access log."""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from typing import Any

from fastapi import FastAPI
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import body_check
from serving.engine import Phase
from serving.errors import (
    ClientGone,
    PayloadTooLarge,
    ServingError,
    Unavailable,
    error_body,
    status_of,
)
from serving.logs import request_id_var
from serving.settings import Settings

logger = logging.getLogger("serving")

CLIENT_CLOSED = 499  # nginx's code for "client closed request"; only logs and metrics see it
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


@functools.cache
def request_fields(path: str) -> frozenset[str] | None:
    """The fields vLLM's request model for `path` takes (None: no field check on this path)."""
    if path == "/v1/completions":
        from vllm.entrypoints.openai.completion.protocol import CompletionRequest

        return body_check.field_names(CompletionRequest)
    if path == "/v1/chat/completions":
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        return body_check.field_names(ChatCompletionRequest)
    return None


class RequestContext:
    """Runs once per HTTP request, without a task of its own (streams pay nothing per chunk)."""

    def __init__(self, app: ASGIApp, owner: FastAPI) -> None:
        self.app = app
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.owner.state
        settings: Settings = state.settings
        path: str = scope["path"]
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        begun = time.perf_counter()
        status = 500
        responded = False  # the response's headers went out
        finished = False
        gone = False
        counted = path not in state.open_paths

        async def send_with_id(message: Message) -> None:
            nonlocal status, finished, responded
            if message["type"] == "http.response.start":
                responded = True
                status = message["status"]
                if status == 500 and state.engine is not None and state.engine.errored:
                    # vLLM answers a request its dead engine dropped with a bare 500; the replica
                    # is gone (health says 503 now), so the request is told to go elsewhere.
                    status = 503
                    message = {**message, "status": status}
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            await send(message)

        async def watched(inner: Receive) -> Message:
            nonlocal gone
            message = await inner()
            if message["type"] == "http.disconnect" and not finished:
                gone = True  # left before its answer was complete
            return message

        if counted:
            state.activity.begin()
        try:
            if not counted or state.phase is Phase.READY:
                body = await self._read_body(scope, receive, settings)
                if body is not None:
                    self._check(path, body, settings)
                    receive = replay(body, functools.partial(watched, receive))
                else:
                    receive = functools.partial(watched, receive)
                await self.app(scope, receive, send_with_id)
            else:
                await send_error(send_with_id, Unavailable(_not_serving(state.phase)))
        except ClientGone:
            gone = True  # the predict envelope stopped its generation; nobody to answer
        except ServingError as error:
            if status_of(error) >= 500:
                logger.error(error.message)
            if not responded:
                await send_error(send_with_id, error)
        except (ClientDisconnect, OSError):
            gone = not finished  # a stream whose client went away: nothing left to send
        except Exception:
            logger.exception("unhandled error while serving the request")
            if not responded:
                await send_error(send_with_id, ServingError("internal error"))
        finally:
            if gone:
                status = CLIENT_CLOSED
            if counted:
                state.activity.end()
            self._record(scope, path, status, time.perf_counter() - begun)
            request_id_var.reset(token)

    async def _read_body(self, scope: Scope, receive: Receive, settings: Settings) -> bytes | None:
        """The whole body (at most max_body_bytes, chunked or not), or None for methods without one."""
        if scope["method"] not in _WITH_BODY:
            return None
        limit = settings.max_body_bytes
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    def _check(self, path: str, body: bytes, settings: Settings) -> None:
        """Depth on every JSON body (parsers recurse); unknown fields where vLLM would drop them."""
        if not body:
            return
        known = request_fields(path)
        if known is not None:
            parsed = body_check.parse_object(body, settings.max_json_depth)
            body_check.check_fields(parsed, known, path)
        else:
            body_check.check_depth(body, settings.max_json_depth)

    def _record(self, scope: Scope, path: str, status: int, elapsed: float) -> None:
        state = self.owner.state
        route = path if path in state.known_paths else "other"
        state.metrics.requests.labels(route, str(status)).inc()
        state.metrics.latency.labels(route).observe(elapsed)
        if path != state.settings.vertex.health_route or status != 200:
            logger.info(
                f"{scope['method']} {path} {status}",
                extra={
                    "httpRequest": {
                        "requestMethod": scope["method"],
                        "requestUrl": path,
                        "status": status,
                        "latency": f"{elapsed:.6f}s",
                    }
                },
            )


def _not_serving(phase: Phase) -> str:
    return {
        Phase.LOADING: "the model is still loading",
        Phase.DRAINING: "this replica is shutting down",
        Phase.FAILED: "the engine is not running",
        Phase.READY: "ready",
    }[phase]


def replay(body: bytes, rest: Receive) -> Receive:
    """A `receive` that hands over the body already read, then what the client sends (its disconnect)."""
    pending = True

    async def receive() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await rest()

    return receive


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the body is larger than {limit} bytes")


async def serving_error_response(request: Any, error: Exception) -> Any:
    """An exception handler for vLLM's app: a ServingError raised inside a vLLM handler (a resolver's) gets its body."""
    from fastapi.responses import JSONResponse

    assert isinstance(error, ServingError)
    return JSONResponse(error_body(error), status_code=status_of(error))


async def send_error(send: Send, error: ServingError) -> None:
    """Answer `error` as vLLM answers its own errors (the OpenAI envelope)."""
    await send_json(send, error_body(error), status_of(error))


async def send_json(send: Send, body: Any, status: int = 200) -> None:
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


def _request_id(scope: Scope) -> str:
    """The client's X-Request-Id, else the trace id, else a fresh one; vLLM sees it as X-Request-Id."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    given = next((v for k, v in headers if k == b"x-request-id"), None)
    if given and len(given) <= 128:
        return given.decode("latin-1")
    trace = next((v for k, v in headers if k == b"x-cloud-trace-context"), None)
    if trace:
        return trace.decode("latin-1").split("/", 1)[0][:128]
    request_id = uuid.uuid4().hex
    # vLLM names its engine request after this header, so its log lines carry the same id; only a
    # fresh id is handed on (a trace id may be shared by several requests, an engine id may not).
    scope["headers"] = [
        *(h for h in headers if h[0] != b"x-request-id"),
        (b"x-request-id", request_id.encode()),
    ]
    return request_id
