"""Vertex AI's routes: health (AIP_HEALTH_ROUTE) and predict (AIP_PREDICT_ROUTE), both onto vLLM's serving code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from serving import body_check
from serving.engine import Phase
from serving.errors import BadRequest, ClientGone
from serving.request_context import replay, request_fields, send_json
from serving.settings import Settings

T = TypeVar("T")
Format = Literal["predict", "chat", "completion"]
ROUTES: dict[Format, str] = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}
# The instance carries these; `parameters` may not (and a predict is answered whole, not streamed).
_INSTANCE_FIELDS = frozenset({"prompt", "messages", "stream", "stream_options"})


async def health(request: Request) -> Response:
    """200 once the engine has loaded and served its warm-up request; 503 while loading, draining or dead."""
    state = request.app.state
    if state.phase is Phase.READY and state.engine is not None and state.engine.errored:
        state.phase = Phase.FAILED
    status = 200 if state.phase is Phase.READY else 503
    body: dict[str, Any] = {"status": state.phase.value}
    if state.failure:
        body["error"] = state.failure
    return JSONResponse(body, status)


def request_format(body: dict[str, Any]) -> Format | None:
    """Which API a body on the predict route speaks: Vertex rawPredict forwards OpenAI bodies as they are."""
    if "instances" in body:
        return "predict"
    marker = body.get("@requestFormat")
    if marker == "chatCompletions" or (marker is None and "messages" in body):
        return "chat"
    if marker == "completions" or (marker is None and "prompt" in body):
        return "completion"
    return None


class Predict:
    """AIP_PREDICT_ROUTE as an ASGI app: OpenAI bodies go through vLLM's routes, envelopes through its handlers."""

    def __init__(self, owner: FastAPI) -> None:
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings: Settings = self.owner.state.settings
        request = Request(scope, receive)
        raw = await request.body()
        body = body_check.parse_object(raw, settings.max_json_depth)
        kind = request_format(body)
        if kind is None:
            raise BadRequest(
                'the body needs "instances" (Vertex predict), "messages" (chat completion) '
                'or "prompt" (completion)'
            )
        engine_app = self.owner.state.engine.app
        if kind != "predict":
            # rawPredict / streamRawPredict: the very request vLLM's route would get, SSE included.
            route = ROUTES[kind]
            if "@requestFormat" in body:
                body.pop("@requestFormat")
                raw = json.dumps(body).encode()
            body_check.check_fields(body, request_fields(route) or frozenset(), route)
            forwarded = {**scope, "path": route, "raw_path": route.encode()}
            await engine_app(forwarded, replay(raw, receive), send)
            return
        try:
            answer = await self._envelope(body, scope, receive, engine_app.state, settings)
        except _Answered as answered:
            await send_json(send, answered.body, int(answered.body["error"].get("code") or 500))
            return
        await send_json(send, answer)

    async def _envelope(
        self, body: dict[str, Any], scope: Scope, receive: Receive, vllm: Any, settings: Settings
    ) -> dict[str, Any]:
        body_check.check_fields(body, frozenset({"instances", "parameters"}), "the predict body")
        instances = body["instances"]
        parameters = body.get("parameters") or {}
        if not isinstance(instances, list) or not instances:
            raise BadRequest("instances must be a non-empty list", param="instances")
        if len(instances) > settings.max_instances:
            raise BadRequest(
                f"{len(instances)} instances in one request; at most "
                f"{settings.max_instances} are allowed",
                param="instances",
            )
        if not isinstance(parameters, dict):
            raise BadRequest("parameters must be an object", param="parameters")
        # The engine names each instance's request itself: one X-Request-Id cannot name several.
        headers = [h for h in scope["headers"] if h[0] != b"x-request-id"]
        raw_request = Request({**scope, "headers": headers}, receive)
        calls = [
            _one(vllm, instance, number, parameters, raw_request)
            for number, instance in enumerate(instances)
        ]
        # Every instance goes to the engine at once, so they share its batches.
        results = await _unless_disconnected(receive, asyncio.gather(*calls))
        for result in results:
            if "error" in result:
                raise _Answered(result)
        answer: dict[str, Any] = {"predictions": results}
        if settings.vertex.deployed_model_id:
            answer["deployedModelId"] = settings.vertex.deployed_model_id
        return answer


class _Answered(Exception):
    """vLLM answered one instance with an error: that error answers the whole predict."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body["error"].get("message"))
        self.body = body


async def _one(
    vllm: Any, instance: Any, number: int, parameters: dict[str, Any], raw_request: Request
) -> dict[str, Any]:
    """One instance through vLLM's completion or chat handler, as its route would call it."""
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest

    where = f"instances[{number}]"
    if isinstance(instance, str):
        instance = {"prompt": instance}
    if (
        not isinstance(instance, dict)
        or len(instance) != 1
        or not ({"prompt", "messages"} & set(instance))
    ):
        raise BadRequest(
            f'{where} must be a string, {{"prompt": ...}} or {{"messages": [...]}}',
            param="instances",
        )
    chat = "messages" in instance
    route = ROUTES["chat" if chat else "completion"]
    known = (request_fields(route) or frozenset()) - _INSTANCE_FIELDS
    body_check.check_fields(parameters, known, "parameters")
    model: Any = ChatCompletionRequest if chat else CompletionRequest
    try:
        request = model.model_validate({**parameters, **instance})
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in error.errors(include_url=False)[:10]
        ]
        raise BadRequest(f"{where}: " + "; ".join(problems), param="instances") from None
    from vllm.entrypoints.serve.exception_handling.error_response import create_error_response

    try:
        if chat:
            result = await vllm.openai_serving_chat.create_chat_completion(request, raw_request)
        else:
            result = await vllm.openai_serving_completion.create_completion(request, raw_request)
    except Exception as error:  # what vLLM's exception handlers answer on its own routes
        result = create_error_response(error)
    dumped: dict[str, Any] = result.model_dump()
    return dumped


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """Await `work`; if the client disconnects first, cancel it (vLLM aborts the engine requests)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise ClientGone("the client disconnected; generation was stopped")
