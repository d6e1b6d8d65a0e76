"""One table maps serving errors to HTTP codes, with OpenAI-style bodies."""

from __future__ import annotations

from serving.errors import (
    BadRequest,
    EngineFailure,
    NotFound,
    PayloadTooLarge,
    ServingError,
    Unavailable,
    error_body,
    status_of,
)


def test_each_error_maps_to_its_status() -> None:
    """Client errors are 4xx, unavailability 503, engine failures 500."""
    assert status_of(BadRequest("x")) == 400
    assert status_of(NotFound("x")) == 404
    assert status_of(PayloadTooLarge("x")) == 413
    assert status_of(Unavailable("x")) == 503
    assert status_of(EngineFailure("x")) == 500
    assert status_of(ServingError("x")) == 500


def test_error_body_is_openai_shaped() -> None:
    """The body carries message, type, param and code, as the openai client expects."""
    assert error_body(BadRequest("too long", param="prompt")) == {
        "error": {
            "message": "too long",
            "type": "invalid_request_error",
            "param": "prompt",
            "code": 400,
        }
    }
