"""Google API errors: one exception carrying a canonical status, rendered as Vertex's error JSON."""

from __future__ import annotations

from typing import Any

# Canonical status → (HTTP status, google.rpc.Code number), as Google's REST APIs map them.
STATUSES: dict[str, tuple[int, int]] = {
    "CANCELLED": (499, 1),
    "UNKNOWN": (500, 2),
    "INVALID_ARGUMENT": (400, 3),
    "DEADLINE_EXCEEDED": (504, 4),
    "NOT_FOUND": (404, 5),
    "ALREADY_EXISTS": (409, 6),
    "PERMISSION_DENIED": (403, 7),
    "RESOURCE_EXHAUSTED": (429, 8),
    "FAILED_PRECONDITION": (400, 9),
    "ABORTED": (409, 10),
    "OUT_OF_RANGE": (400, 11),
    "UNIMPLEMENTED": (501, 12),
    "INTERNAL": (500, 13),
    "UNAVAILABLE": (503, 14),
    "UNAUTHENTICATED": (401, 16),
}

# The HTTP codes fault injection accepts, to the status each one means.
HTTP_TO_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class ApiError(Exception):
    """An error the API answers with: a canonical status and a message for people."""

    def __init__(self, status: str, message: str, http_code: int | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        super().__init__(message)
        self.status = status
        self.message = message
        # A container's own client error code (413, 422, ...) passed through as Vertex does.
        self._http_code = http_code

    @property
    def http_code(self) -> int:
        return self._http_code or STATUSES[self.status][0]

    @property
    def rpc_code(self) -> int:
        return STATUSES[self.status][1]

    def body(self) -> dict[str, Any]:
        """The JSON body of an HTTP error answer."""
        return {"error": {"code": self.http_code, "message": self.message, "status": self.status}}

    def rpc_status(self) -> dict[str, Any]:
        """The google.rpc.Status a failed operation carries."""
        return {"code": self.rpc_code, "message": self.message}


def invalid(message: str) -> ApiError:
    return ApiError("INVALID_ARGUMENT", message)


def not_found(kind: str, name: str) -> ApiError:
    return ApiError("NOT_FOUND", f'{kind} "{name}" not found.')


def precondition(message: str) -> ApiError:
    return ApiError("FAILED_PRECONDITION", message)


def as_api_error(error: BaseException) -> ApiError:
    """An ApiError as is; anything else as INTERNAL naming it."""
    if isinstance(error, ApiError):
        return error
    return ApiError("INTERNAL", f"The emulator failed: {type(error).__name__}: {error}")
