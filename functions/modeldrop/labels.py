"""Label keys on what modeldrop manages, so the sweep derives its work from Vertex itself."""

from __future__ import annotations

from collections.abc import Mapping

from modeldrop.durations import format_duration, parse_duration

MANAGED_BY = "managed-by"
MANAGED_BY_VALUE = "modeldrop"
MODEL = "modeldrop-model"
VERSION = "modeldrop-version"
IDLE_TTL = "modeldrop-idle-ttl"  # e.g. "30m"; "0" means never torn down for idleness
KEEP_WARM = "modeldrop-keep-warm"  # "true" keeps the endpoint's deployments whatever the traffic

MANAGED_FILTER = f"labels.{MANAGED_BY}={MANAGED_BY_VALUE}"


def managed(extra: Mapping[str, str]) -> dict[str, str]:
    """The labels of a managed resource: managed-by plus `extra`."""
    return {MANAGED_BY: MANAGED_BY_VALUE, **extra}


def is_managed(labels: Mapping[str, str]) -> bool:
    return labels.get(MANAGED_BY) == MANAGED_BY_VALUE


def endpoint_labels(model: str, idle_ttl_seconds: int, keep_warm: bool) -> dict[str, str]:
    return managed(
        {
            MODEL: model,
            IDLE_TTL: format_duration(idle_ttl_seconds) if idle_ttl_seconds else "0",
            KEEP_WARM: "true" if keep_warm else "false",
        }
    )


def idle_ttl_seconds(labels: Mapping[str, str], default: int) -> int:
    """The endpoint's idle TTL in seconds; `default` when absent or unreadable."""
    try:
        return parse_duration(labels[IDLE_TTL])
    except (KeyError, ValueError):
        return default


def keep_warm(labels: Mapping[str, str]) -> bool:
    return labels.get(KEEP_WARM) == "true"
