"""The container's own errors (before or around vLLM's) and the one table that maps them to HTTP codes and vLLM's error bodies."""

from __future__ import annotations

from typing import Any


class ServingError(Exception):
    """Root of the errors the container itself answers; `kind` is the error type, named as vLLM names them."""

    kind = "InternalServerError"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class BadRequest(ServingError):
    """The request is malformed or asks for something outside the limits; the client must change it."""

    kind = "BadRequestError"


class PayloadTooLarge(ServingError):
    """The body is larger than the configured maximum."""

    kind = "RequestEntityTooLarge"


class NotFound(ServingError):
    """The request names a model this container does not serve."""

    kind = "NotFoundError"


class Unavailable(ServingError):
    """Not serving right now (loading, draining, or the engine died); the client may retry elsewhere."""

    kind = "ServiceUnavailableError"


class ClientGone(ServingError):
    """The client closed the connection before its answer was ready; its generation was stopped."""

    kind = "ClientClosedRequest"


STATUS: dict[type[ServingError], int] = {
    BadRequest: 400,
    NotFound: 404,
    PayloadTooLarge: 413,
    ClientGone: 499,  # nginx's code for "client closed request"; only logs and metrics see it
    Unavailable: 503,
    ServingError: 500,
}


def status_of(error: ServingError) -> int:
    """The HTTP status for `error`, by the first class in its MRO that the table names."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def error_body(error: ServingError) -> dict[str, Any]:
    """vLLM's ErrorResponse shape (OpenAI's envelope), which the openai client turns into its exception types."""
    status = status_of(error)
    return {
        "error": {
            "message": error.message,
            "type": error.kind,
            "param": error.param,
            "code": status,
        }
    }
