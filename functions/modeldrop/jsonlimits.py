"""JSON parsed at a boundary with limits on size and nesting, so hostile input is a ValueError, never a crash.

Python's own `json.loads` raises RecursionError (not ValueError) on thousands of nested brackets,
and what it does parse can still be deep enough to crash whatever walks it afterwards. Every JSON
that comes from outside (messages, bucket objects, state records) goes through `loads`: pydantic's
parser, which stops at a fixed nesting depth (about 200 levels) with a ValueError, and refuses
NaN and Infinity, which are not JSON.
"""

from __future__ import annotations

from typing import Any

import pydantic_core

MAX_DEPTH = 64  # far beyond any command, manifest, config or index; checked after parsing


class JsonLimitError(ValueError):
    """The document is not JSON, or is larger or deeper than the boundary allows."""


def loads(data: bytes | str, *, max_bytes: int, what: str = "the document") -> Any:
    """`data` parsed; JsonLimitError names `what` and the limit it broke."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise JsonLimitError(f"{what} is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        value = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as error:
        raise JsonLimitError(f"{what} is not valid JSON: {error}") from error
    if _depth_over(value, MAX_DEPTH):
        raise JsonLimitError(f"{what} nests deeper than {MAX_DEPTH} levels")
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """Whether `value` nests deeper than `limit`, walked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
