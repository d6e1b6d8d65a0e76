"""Request bodies checked before vLLM parses them: JSON nesting depth, and top-level fields vLLM would drop."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from serving.errors import BadRequest

# A JSON string, escapes included (unrolled, so it runs in linear time).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_OPENING = np.zeros(256, dtype=np.int8)
_OPENING[[ord("["), ord("{")]] = 1
_OPENING[[ord("]"), ord("}")]] = -1


def nesting_depth(raw: bytes) -> int:
    """The deepest bracket nesting of `raw`, strings skipped; linear time, no recursion."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    if not brackets:
        return 0
    steps = _OPENING[np.frombuffer(brackets, dtype=np.uint8)]
    return int(np.cumsum(steps, dtype=np.int64).max())


def check_depth(raw: bytes, limit: int) -> None:
    """BadRequest for a body nested deeper than `limit`: parsers recurse, and thousands of levels crash them."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return  # cannot nest deeper than its count of opening brackets
    depth = nesting_depth(raw)
    if depth > limit:
        raise BadRequest(f"the body nests {depth} levels deep; at most {limit} are allowed")


def parse_object(raw: bytes, limit: int) -> dict[str, Any]:
    """The body as a JSON object, after the depth check; malformed JSON or another type is a BadRequest."""
    check_depth(raw, limit)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, not {type(body).__name__}")
    return body


def field_names(model: Any) -> frozenset[str]:
    """A pydantic request model's field names and aliases."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        if info.alias:
            names.add(info.alias)
    return frozenset(names)


def check_fields(body: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    """vLLM ignores unknown fields (logged at DEBUG only): the container refuses them with a 400 instead."""
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadRequest(
            f"unsupported field(s) in {where}: {', '.join(unknown)} (refused rather than ignored)",
            param=unknown[0],
        )
