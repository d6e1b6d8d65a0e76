"""What one sweep did, and how it leaves one bad item for the next sweep."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from modeldrop.errors import ModeldropError

log = logging.getLogger("modeldrop.sweeper")


@dataclass
class Summary:
    """What one sweep did, for the log line and the benchmark."""

    endpoints: int = 0
    reported: list[str] = field(default_factory=list)
    waiting: int = 0
    torn_down: list[str] = field(default_factory=list)
    stale_leases_cleared: list[str] = field(default_factory=list)
    dead_letters_answered: list[str] = field(default_factory=list)
    started_from_queue: list[str] = field(default_factory=list)  # request ids whose turn came
    steps_started: list[str] = field(default_factory=list)  # <request id>.<step> started in turn
    results_published: list[str] = field(default_factory=list)  # from the outbox, after a crash
    uploads_judged: list[str] = field(default_factory=list)  # abandoned or completed folders
    # models whose adapter index did not name exactly their recorded adapters (adapters.py)
    adapter_indexes_repaired: list[str] = field(default_factory=list)
    monitoring_queries: int = 0
    # scale-to-zero deployments near Vertex's 30-day auto-undeploy (each also logged at WARNING)
    expiring: list[str] = field(default_factory=list)
    skipped: bool = False  # another sweep held the sweep lock
    errors: list[str] = field(default_factory=list)  # items left for the next sweep, and why


def skip(summary: Summary, what: str, error: Exception) -> None:
    """One bad item is logged and left; the sweep goes on with every other."""
    if isinstance(error, ModeldropError):
        log.warning("sweep: %s left for the next sweep: %s", what, error)
    else:  # not a designed outcome: a person should look
        log.error("sweep: %s failed unexpectedly", what, exc_info=error)
    summary.errors.append(f"{what}: {type(error).__name__}: {error}"[:500])
