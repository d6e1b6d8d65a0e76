"""Reading a request body as JSON and parsing it into a pydantic model, with 400s that say what is wrong."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from serving.errors import BadRequest

Model = TypeVar("Model", bound=BaseModel)


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object; malformed JSON or another JSON type is a BadRequest."""
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, not {type(body).__name__}")
    return body


def parse_as(model: type[Model], body: dict[str, Any]) -> Model:
    """`body` validated as `model`; every problem is listed with its path."""
    try:
        return model.model_validate(body)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in e['loc']) or 'body'}: {e['msg']}"
            for e in error.errors(include_url=False)[:10]
        ]
        first = error.errors()[0]["loc"] if error.errors() else ()
        raise BadRequest(
            "invalid request: " + "; ".join(problems),
            param=str(first[0]) if first else None,
        ) from None
