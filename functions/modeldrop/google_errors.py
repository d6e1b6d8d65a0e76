"""One table from Google API errors to modeldrop's retry semantics, shared by every adapter."""

from __future__ import annotations

from modeldrop.errors import ConflictError, ModeldropError, PermanentError, TransientError

# HTTP status -> what retrying can do. 409/412 are races with another writer: retry later.
_TRANSIENT = {408, 429, 500, 502, 503, 504}
_CONFLICT = {409, 412}


def translate(error: Exception, doing: str) -> ModeldropError:
    """The modeldrop error for a failed Google API call made while `doing` something."""
    from google.api_core import exceptions as gexc

    if isinstance(error, gexc.GoogleAPICallError):
        code = error.code if isinstance(error.code, int) else None
        text = f"{doing}: {error.message or error}"
        if isinstance(error, gexc.ResourceExhausted | gexc.RetryError) or code in _TRANSIENT:
            return TransientError(text)
        if code in _CONFLICT:
            return ConflictError(text)
        return PermanentError(text)
    if isinstance(error, TimeoutError | ConnectionError | gexc.RetryError):
        return TransientError(f"{doing}: {error}")
    if isinstance(error, OSError):
        return TransientError(f"{doing}: {error}")
    return PermanentError(f"{doing}: {error}")
