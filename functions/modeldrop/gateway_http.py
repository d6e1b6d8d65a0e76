"""The gateway's HTTP shapes: request bodies parsed at the boundary, errors in one table, SSE lines."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from modeldrop import jsonlimits
from modeldrop.gateway_rules import Action, Decision, Phase

MAX_BODY_BYTES = 10 * 1024 * 1024

# Action -> (HTTP code, Google's canonical status, OpenAI's error type).
_ERRORS = {
    Action.NOT_FOUND: (404, "NOT_FOUND", "NotFoundError"),
    Action.CONFLICT: (409, "FAILED_PRECONDITION", "ConflictError"),
    Action.FAILED: (502, "UNAVAILABLE", "BadGatewayError"),
    Action.GIVE_UP: (503, "UNAVAILABLE", "ServiceUnavailableError"),
}
_BY_CODE = {
    400: ("INVALID_ARGUMENT", "BadRequestError"),
    404: ("NOT_FOUND", "NotFoundError"),
    405: ("UNIMPLEMENTED", "MethodNotAllowedError"),
    413: ("INVALID_ARGUMENT", "RequestTooLargeError"),
}


class BadRequest(ValueError):
    """The request can't be routed as sent; `code` is its HTTP status (400, 404, 405, 413)."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Failure:
    """An error answer: status, JSON body, and the headers it needs (Retry-After)."""

    code: int
    body: dict[str, Any]
    headers: dict[str, str]


def error_body(code: int, status: str, kind: str, message: str, **extra: Any) -> dict[str, Any]:
    """One shape for every error the gateway makes: Google's fields (code, status, message) and
    OpenAI's (type, message) together, so both kinds of client read it."""
    return {"error": {"code": code, "status": status, "type": kind, "message": message, **extra}}


def bad_request(error: BadRequest) -> Failure:
    status, kind = _BY_CODE.get(error.code, ("INVALID_ARGUMENT", "BadRequestError"))
    return Failure(error.code, error_body(error.code, status, kind, str(error)), {})


def refusal(decision: Decision, endpoint: str, retry_after_s: int) -> Failure:
    """The answer to a decision that ends a request without Vertex's."""
    code, status, kind = _ERRORS[decision.action]
    extra: dict[str, Any] = {"state": decision.phase.value, "endpoint": endpoint}
    headers = {}
    if decision.action is Action.GIVE_UP:
        headers["Retry-After"] = str(retry_after_s)
        extra["retry_after_s"] = retry_after_s
    return Failure(code, error_body(code, status, kind, decision.reason, **extra), headers)


def json_object(raw: bytes, what: str) -> dict[str, Any]:
    """The request body as a JSON object, or BadRequest (413 when too large)."""
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"{what} is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}", 413)
    try:
        body = jsonlimits.loads(raw, max_bytes=MAX_BODY_BYTES, what=what)
    except ValueError as error:
        raise BadRequest(str(error)) from error
    if not isinstance(body, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return body


def openai_body(raw: bytes, chat: bool) -> tuple[dict[str, Any], bool]:
    """A chat or completion body and whether it streams; its other fields go to the container as
    they are (vLLM honours or refuses each)."""
    route = "/v1/chat/completions" if chat else "/v1/completions"
    body = json_object(raw, f"the {route} body")
    needed, other = ("messages", "prompt") if chat else ("prompt", "messages")
    if needed not in body:
        raise BadRequest(f"{route} needs {needed!r}")
    if other in body:
        raise BadRequest(f"{route} takes {needed!r}, not {other!r}: use the other route")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest('"stream" must be true or false')
    return body, stream


def predict_body(raw: bytes) -> bytes:
    """A Vertex predict body, checked for its envelope and forwarded byte for byte."""
    body = json_object(raw, "the predict body")
    if not isinstance(body.get("instances"), list):
        raise BadRequest('the predict body must be {"instances": [...], "parameters": {...}}')
    return raw


def keepalive(phase: Phase, waited_s: float, reason: str) -> bytes:
    """An SSE comment: clients and proxies keep the stream open, SSE parsers skip it."""
    return f": {phase.value} {waited_s:.0f}s - {reason}\n\n".encode()


def sse_error(code: int, body: dict[str, Any]) -> bytes:
    """An error once a held stream has begun (its 200 is sent): vLLM's way, a data event with
    `error`, then the end of the stream."""
    error = dict(body.get("error", body)) if isinstance(body, dict) else {"message": str(body)}
    error.setdefault("code", code)
    return f"data: {json.dumps({'error': error})}\n\ndata: [DONE]\n\n".encode()


def upstream_error(code: int, text: str) -> dict[str, Any]:
    """Vertex's error body as JSON (it is JSON; a proxy in between may answer text)."""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    return error_body(code, "UNKNOWN", "UpstreamError", text[:2000])
