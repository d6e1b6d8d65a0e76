"""The start's phases, timed from the process start and logged as JSON lines (`startup phase`, `startup phases`)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

logger = logging.getLogger("serving")
T = TypeVar("T")


def proc_stat_fields(proc_stat: str) -> list[str]:
    """A /proc/<pid>/stat's fields after the command name (which may hold spaces): field N of
    proc(5) is at index N - 3. Raises OSError where it can't be read."""
    with open(proc_stat) as file:
        return file.read().rsplit(")", 1)[1].split()


def process_started_monotonic(proc_stat: str = "/proc/self/stat") -> float:
    """time.monotonic() at this process's start (the kernel's record), or now where it can't be read.

    The interpreter's own start and the imports before `main` are part of the time to ready.
    """
    now = time.monotonic()
    try:
        started_s = int(proc_stat_fields(proc_stat)[22 - 3]) / os.sysconf("SC_CLK_TCK")  # starttime
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started_s
    except (OSError, IndexError, ValueError, AttributeError):
        return now
    return now - max(0.0, age)


class Phases:
    """Phases of one start (some run at once), each as start and end seconds since the process started."""

    def __init__(self, origin: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.origin = origin
        self.clock = clock
        self._lock = threading.Lock()
        self.done: dict[str, dict[str, float]] = {}

    def now_s(self) -> float:
        return round(self.clock() - self.origin, 3)

    def record(self, name: str, start: float, end: float, **fields: Any) -> None:
        """Record a phase from monotonic `start` to `end`, and log it."""
        entry = {
            "start_s": round(start - self.origin, 3),
            "end_s": round(end - self.origin, 3),
            "duration_s": round(end - start, 3),
        }
        with self._lock:
            self.done[name] = entry
        logger.info("startup phase", extra={"phase": name, **entry, **fields})

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = self.clock()
        try:
            yield
        finally:
            self.record(name, start, self.clock())

    def timed(self, name: str, work: Callable[[], T]) -> Callable[[], T]:
        """`work`, recorded as phase `name` when it runs (in whatever thread)."""

        def run() -> T:
            with self.phase(name):
                return work()

        return run

    def summary(self) -> dict[str, Any]:
        """Every phase so far, in the order they started, and the time since the process started."""
        with self._lock:
            ordered = sorted(self.done.items(), key=lambda item: item[1]["start_s"])
        return {"phases": dict(ordered), "since_process_start_s": self.now_s()}
