"""List requests: Vertex's label/display-name filters and opaque page tokens."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from local.vertex.errors import invalid

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

_TERM = re.compile(
    r"""^\s*(?P<field>labels\.(?:"[^"]+"|[A-Za-z0-9_\-]+)|display_name|displayName)\s*
        (?P<op>!=|=|:)\s*(?P<value>"[^"]*"|\*|[^\s"]+)\s*$""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Term:
    """One `field op value` of a filter: a label or the display name."""

    label: str | None
    op: str
    value: str

    def matches(self, labels: dict[str, str], display_name: str) -> bool:
        actual = display_name if self.label is None else labels.get(self.label)
        if self.op == ":" and self.value == "*":
            return actual is not None
        if self.op == "!=":
            return actual != self.value
        return actual == self.value


def parse_filter(text: str) -> list[Term]:
    """Terms joined by AND; anything else is refused with INVALID_ARGUMENT naming it."""
    if not text.strip():
        return []
    terms = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = _TERM.match(part)
        if match is None:
            raise invalid(
                f"Unsupported filter term {part!r}: the emulator supports labels.KEY=VALUE, "
                "labels.KEY!=VALUE, labels.KEY:* and display_name=VALUE, joined by AND."
            )
        field = match["field"]
        label = field.removeprefix("labels.").strip('"') if field.startswith("labels.") else None
        terms.append(Term(label, match["op"], match["value"].strip('"')))
    return terms


def page(items: Sequence[T], page_size: int | None, page_token: str | None) -> tuple[list[T], str]:
    """One page of `items` and the token of the next one ("" on the last page)."""
    size = page_size or DEFAULT_PAGE_SIZE
    if size < 0:
        raise invalid(f"page_size must not be negative, got {size}.")
    size = min(size, MAX_PAGE_SIZE)
    start = _offset(page_token) if page_token else 0
    chunk = list(items[start : start + size])
    end = start + len(chunk)
    return chunk, (_token(end) if end < len(items) else "")


def select(
    items: Sequence[T], terms: list[Term], facts: Callable[[T], tuple[dict[str, str], str]]
) -> list[T]:
    """The items whose (labels, display name) satisfy every term."""
    return [item for item in items if all(t.matches(*facts(item)) for t in terms)]


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(token: str) -> int:
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind != "offset":
            raise ValueError(kind)
        return int(value)
    except ValueError as error:
        raise invalid(f"Invalid page_token {token!r}.") from error
