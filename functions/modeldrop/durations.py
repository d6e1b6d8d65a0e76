"""Durations as people write them ("90s", "30m", "2h", "1d") and as seconds."""

from __future__ import annotations

import math
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")


def parse_duration(text: str | int | float) -> int:
    """Seconds in `text`; a bare number is seconds. Raises ValueError with the accepted forms."""
    if isinstance(text, bool):
        raise ValueError(
            "a duration is a number of seconds or a string like '90s', '30m', '2h', '1d'"
        )
    if isinstance(text, int | float):
        # inf and nan too: pydantic turns only ValueError into a validation error, and anything
        # else escaping the parser would make a bad command a poison message (retried forever).
        if not math.isfinite(text) or text < 0:
            raise ValueError(f"duration must be a finite number of seconds >= 0, got {text}")
        return int(text)
    if not isinstance(text, str):
        raise ValueError(
            f"a duration is a number of seconds or a string like '90s', not {type(text).__name__}"
        )
    match = _DURATION.match(text)
    if not match:
        raise ValueError(
            f"bad duration {text!r}: use a number of seconds or a string like '90s', '30m', '2h', '1d'"
        )
    value, unit = match.groups()
    return int(value) * _UNITS[unit or "s"]


def format_duration(seconds: int) -> str:
    """The shortest exact form: 1800 -> '30m', 90 -> '90s'."""
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
