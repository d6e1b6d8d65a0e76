"""A model's startup and health probes, checked as the v1 Probe reference states its rules."""

from __future__ import annotations

from typing import Any

from local.vertex.errors import invalid

# Probe defaults (v1 Probe): period 10 s, timeout 1 s, thresholds 1 and 3, initial delay 0.
DEFAULTS = {"periodSeconds": 10, "timeoutSeconds": 1}
_MINIMUM = {
    "periodSeconds": 1,
    "timeoutSeconds": 1,
    "failureThreshold": 1,
    "successThreshold": 1,
    "initialDelaySeconds": 0,
}
_KINDS = ("exec", "httpGet", "grpc", "tcpSocket")


def check(probe: Any, what: str, equal_allowed: bool) -> None:
    """Refuse a probe whose fields break the reference's rules.

    `period_seconds` "must be less than timeout_seconds" and `timeout_seconds` "must be greater
    or equal to period_seconds": both refuse period > timeout; period == timeout is allowed only
    by the second sentence, so `equal_allowed` picks that reading. Unset fields take the defaults
    first (a probe that sets only period_seconds=5 has timeout 1 and is refused).
    """
    if probe is None:
        return
    if not isinstance(probe, dict):
        raise invalid(f"{what} must be an object.")
    kinds = [k for k in _KINDS if k in probe]
    if len(kinds) > 1:
        raise invalid(f"{what} sets {kinds}; a probe has one of {list(_KINDS)}.")
    values: dict[str, int] = {}
    for field, minimum in _MINIMUM.items():
        raw = probe.get(field, DEFAULTS.get(field, minimum))
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise invalid(f"{what}.{field} must be an integer, not {raw!r}.")
        try:
            value = int(raw)
        except ValueError as error:
            raise invalid(f"{what}.{field} must be an integer, not {raw!r}.") from error
        if value < minimum:
            raise invalid(f"{what}.{field} must be at least {minimum}, not {value}.")
        values[field] = value
    period, timeout = values["periodSeconds"], values["timeoutSeconds"]
    if period > timeout or (period == timeout and not equal_allowed):
        raise invalid(
            f"{what}.period_seconds ({period}) must be less than timeout_seconds ({timeout})."
        )
