"""Following one request's results to its terminal one, printing each step as it arrives."""

from __future__ import annotations

import time
import uuid
from typing import TextIO

from modeldrop.cli.feed import ResultFeed
from modeldrop.errors import ModeldropError
from modeldrop.results import Result, Status

SUCCESS = frozenset({Status.REGISTERED, Status.READY, Status.SUCCEEDED, Status.TORN_DOWN})
PULL_WAIT_S = 5.0


class FollowTimeout(ModeldropError):
    """No terminal result arrived in time; the work itself may still finish."""


def new_request_id(action: str) -> str:
    """A fresh idempotency key, readable in logs: `cli-deploy-3f9c1a2b7d4e`."""
    return f"cli-{action}-{uuid.uuid4().hex[:12]}"


def format_result(result: Result, elapsed_s: float | None = None) -> str:
    """One line per result (plus one per reason), the way `follow` and `results --follow` print them."""
    when = f"[{elapsed_s:6.1f}s]" if elapsed_s is not None else f"{result.at:%H:%M:%S}"
    subject = "/".join(p for p in (result.model, result.version) if p) or result.endpoint or ""
    parts = [when, f"{result.status.value:<10}", f"{result.action:<15}"]
    if subject:
        parts.append(subject)
    if result.message:
        parts.append(f"- {result.message}")
    lines = [" ".join(parts)]
    lines += [f"    - {reason}" for reason in result.reasons if reason != result.message]
    return "\n".join(lines)


def follow(feed: ResultFeed, request_id: str, timeout_s: float, out: TextIO) -> Result:
    """Print `request_id`'s results until the terminal one, which is returned; FollowTimeout if none."""
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FollowTimeout(
                f"no final result for {request_id} after {timeout_s:.0f}s; the work may still "
                f"finish: `modeldrop results --follow --request-id {request_id}` shows it"
            )
        for result in feed.pull(wait_s=min(PULL_WAIT_S, remaining)):
            if result.request_id != request_id:
                continue
            out.write(format_result(result, time.monotonic() - started) + "\n")
            out.flush()
            if result.terminal:
                return result


def exit_code(result: Result) -> int:
    """0 when the request did what was asked; 1 when it ended failed, rejected, dropped or superseded."""
    return 0 if result.status in SUCCESS else 1
