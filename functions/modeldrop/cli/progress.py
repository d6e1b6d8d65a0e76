"""A byte-progress bar on stderr: redrawn in place on a terminal, a line every few seconds otherwise."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

BAR_WIDTH = 28


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


class ProgressBar:
    """Thread-safe: worker threads call `advance(n)`; the bar shows done/total, rate and ETA."""

    def __init__(
        self, label: str, total: int, stream: TextIO = sys.stderr, every_s: float = 5.0
    ) -> None:
        self.label = label
        self.total = max(total, 0)
        self.done = 0
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.every_s = 0.1 if self.tty else every_s
        self.started = time.monotonic()
        self._drawn = self.started  # the first line after every_s: short work prints only its end
        self._lock = threading.Lock()

    def advance(self, count: int) -> None:
        with self._lock:
            self.done += count
            now = time.monotonic()
            if now - self._drawn >= self.every_s:
                self._drawn = now
                self._draw(final=False)

    def finish(self) -> float:
        """Draw the final state; the seconds it took."""
        with self._lock:
            self._draw(final=True)
        return time.monotonic() - self.started

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed
        share = self.done / self.total if self.total else 1.0
        filled = int(BAR_WIDTH * min(share, 1.0))
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        eta = (self.total - self.done) / rate if rate > 0 and self.done < self.total else 0.0
        return (
            f"{self.label} [{bar}] {share * 100:5.1f}% {human_bytes(self.done)}/"
            f"{human_bytes(self.total)} {human_bytes(rate)}/s "
            + (f"{elapsed:.1f}s" if self.done >= self.total else f"ETA {eta:.0f}s")
        )

    def _draw(self, final: bool) -> None:
        text = self.line()
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
