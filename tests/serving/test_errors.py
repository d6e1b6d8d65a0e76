"""One table maps the container's own errors to HTTP codes, with vLLM's error bodies."""

from __future__ import annotations

from serving.errors import (
    BadRequest,
    ClientGone,
    NotFound,
    PayloadTooLarge,
    ServingError,
    Unavailable,
    error_body,
    status_of,
)


def test_each_error_maps_to_its_status() -> None:
    """Client errors are 4xx, a vanished client 499, unavailability 503, the rest 500."""
    assert status_of(BadRequest("x")) == 400
    assert status_of(NotFound("x")) == 404
    assert status_of(PayloadTooLarge("x")) == 413
    assert status_of(ClientGone("x")) == 499
    assert status_of(Unavailable("x")) == 503
    assert status_of(ServingError("x")) == 500


def test_error_body_is_shaped_as_vllm_answers() -> None:
    """The body carries message, type, param and code, as vLLM's ErrorResponse does."""
    assert error_body(BadRequest("too long", param="prompt")) == {
        "error": {"message": "too long", "type": "BadRequestError", "param": "prompt", "code": 400}
    }
