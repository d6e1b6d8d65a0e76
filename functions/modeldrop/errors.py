"""Errors that carry retry semantics: permanent (report and ack), transient (raise, retry), stale (drop)."""

from __future__ import annotations


class ModeldropError(Exception):
    """Root of every error modeldrop raises on purpose."""


class PermanentError(ModeldropError):
    """Bad input or an impossible request: report a failed result and acknowledge; retrying can't help."""

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons or [message]


class QuotaError(PermanentError):
    """Vertex refused a deploy for the project's accelerator quota: reported, never fallen back on."""


class StockoutError(PermanentError):
    """Vertex has no capacity for the machine now: the deploy may try its next placement."""


class TransientError(ModeldropError):
    """A dependency is busy or down (429, 503, RESOURCE_EXHAUSTED, timeouts): raise so the platform retries."""


class ConflictError(TransientError):
    """Someone else holds the endpoint's lease or changed the state first; retrying later will succeed."""


class StaleEventError(ModeldropError):
    """The event is older than the maximum age or superseded by newer state: drop it, with a result."""


class ConfigError(ModeldropError):
    """The environment lacks a variable or holds a bad value; raised at start, naming the variable."""
