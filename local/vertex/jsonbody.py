"""Request bodies parsed as JSON within a size and a nesting-depth limit, refused as Vertex refuses them."""

from __future__ import annotations

import json
from typing import Any

from local.vertex.errors import invalid


def check_size(raw: bytes, max_bytes: int) -> None:
    """INVALID_ARGUMENT when `raw` is over `max_bytes` (0: no limit), in the words Google's front end uses."""
    if max_bytes and len(raw) > max_bytes:
        raise invalid(f"Request payload size exceeds the limit: {max_bytes} bytes.")


def loads(raw: bytes, max_depth: int, max_bytes: int) -> Any:
    """The JSON value of `raw`; a body too large, too deep or not JSON is INVALID_ARGUMENT (never a 500)."""
    check_size(raw, max_bytes)
    # A body with fewer brackets than the limit cannot nest deeper: skip the walk (the common case).
    deep_possible = raw.count(b"[") + raw.count(b"{") > max_depth
    try:
        value = json.loads(raw)
    except RecursionError as error:
        raise _too_deep(max_depth) from error
    except ValueError as error:
        raise invalid(f"Invalid JSON payload received. {error}.") from error
    if deep_possible and _depth(value) > max_depth:
        raise _too_deep(max_depth)
    return value


def _too_deep(max_depth: int) -> Exception:
    # protobuf's JSON parser (json_format.Parse, max_recursion_depth=100) refuses deeper messages.
    return invalid(
        f"Invalid JSON payload received. The message nests deeper than {max_depth} levels."
    )


def _depth(value: Any) -> int:
    """The nesting depth of a parsed JSON value, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item)
    return deepest
