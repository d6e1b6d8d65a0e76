"""Bodies are checked before vLLM parses them: nesting depth in linear time, unknown fields refused."""

from __future__ import annotations

import pytest

from serving.body_check import check_depth, check_fields, nesting_depth, parse_object
from serving.errors import BadRequest


def test_depth_counts_brackets_outside_strings() -> None:
    """Brackets inside strings (escaped quotes too) do not count; objects and arrays do."""
    assert nesting_depth(b'{"a": [1, {"b": "[[[[\\"{{"}]}') == 3
    assert nesting_depth(b'"plain"') == 0


def test_thousands_of_levels_are_refused_without_recursion() -> None:
    """100,000 levels of arrays or objects are a 400 naming the limit, not a RecursionError."""
    for deep in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        with pytest.raises(BadRequest, match="at most 64"):
            check_depth(deep, 64)
    check_depth(b"[" * 64 + b"]" * 64, 64)


def test_parse_object_and_fields() -> None:
    """Malformed JSON and non-objects are 400s; unknown fields are refused by name."""
    with pytest.raises(BadRequest, match="not valid JSON"):
        parse_object(b'{"a": [', 64)
    with pytest.raises(BadRequest, match="JSON object"):
        parse_object(b"[1]", 64)
    with pytest.raises(BadRequest, match="bogus"):
        check_fields({"prompt": "x", "bogus": 1}, frozenset({"prompt"}), "/v1/completions")
