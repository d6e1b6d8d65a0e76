"""Which Vertex API version a request came in on (v1 or v1beta1): the types its operations carry."""

from __future__ import annotations

from contextvars import ContextVar

V1 = "v1"
V1BETA1 = "v1beta1"
# Set by the app's /v1beta1 alias for the request being served; work the request starts copies it.
current: ContextVar[str] = ContextVar("vertex_api_version", default=V1)


def type_prefix(version: str | None = None) -> str:
    """The Any type URL prefix of this version's messages (a v1beta1 client unpacks v1beta1 types)."""
    return f"type.googleapis.com/google.cloud.aiplatform.{version or current.get()}."
