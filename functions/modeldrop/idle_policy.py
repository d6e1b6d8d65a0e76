"""The idle policies, pure: `teardown` (the sweep undeploys an idle deployment, `wake` brings it
back) and `scale-to-zero` (Vertex's v1beta1 Preview scales it to zero replicas itself): the period
Vertex takes, the endpoints it refuses, the auto-undeploy to warn of, and what `status` shows.

Sources and the emulator's play of each: docs/vertex-fidelity.md rows 58-66 and 75-76.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum

from modeldrop.errors import PermanentError
from modeldrop.records import OperationRecord, Teardown
from modeldrop.resources import Deployment, Endpoint

# v1beta1 DedicatedResources.ScaleToZeroSpec: "[MinValue=300] (5 minutes) [MaxValue=28800] (8 hours)".
MIN_PERIOD_S = 300
MAX_PERIOD_S = 28_800
# Vertex undeploys a scale-to-zero deployment left at zero for 30 days (assumed: issue 13 names it;
# the Preview page is not readable here). The sweep warns this long before.
AUTO_UNDEPLOY = timedelta(days=30)
WARN_BEFORE = timedelta(days=3)


class Wakefulness(StrEnum):
    """An endpoint's serving state for people, derived from Vertex and the teardown records."""

    READY = "ready"  # a deployment has a replica up and serves
    WAKING = "waking"  # a deploy or wake runs, or Vertex scales a deployment up from zero
    ASLEEP = "asleep"  # torn down by the sweep (wake brings it back) or at zero replicas
    DOWN = "down"  # nothing deployed and nothing to wake: send a deploy


def scale_to_zero_period(ttl_s: int) -> tuple[int, str]:
    """Vertex's idle scale-down period for an idle TTL, and what clamping it did (said, not hidden)."""
    period = min(max(ttl_s, MIN_PERIOD_S), MAX_PERIOD_S)
    if period == ttl_s:
        return period, ""
    bound = "minimum of 5 min" if ttl_s < MIN_PERIOD_S else "maximum of 8 h"
    return period, (
        f"idle_ttl {ttl_s} s is outside Vertex's scale-to-zero range (5 min to 8 h): clamped to "
        f"its {bound}, {period} s"
    )


def check_endpoint(endpoint: Endpoint, scale_to_zero: bool) -> None:
    """PermanentError where Vertex would refuse the deploy: scale-to-zero needs a dedicated
    endpoint to itself, and nothing may join a scale-to-zero deployment on its endpoint."""
    zeroing = [d for d in endpoint.deployments if d.scales_to_zero]
    if scale_to_zero and not endpoint.dedicated:
        raise PermanentError(
            f"endpoint {endpoint.id} is not a dedicated endpoint, and Vertex's scale-to-zero runs "
            "on dedicated endpoints only: deploy to a new endpoint name (modeldrop creates it "
            "dedicated)"
        )
    if scale_to_zero and endpoint.deployments:
        raise PermanentError(
            f"a scale-to-zero deployment must be the only model on its endpoint; {endpoint.id} "
            f"serves {', '.join(_names(endpoint.deployments))}: undeploy first, or use another endpoint"
        )
    if zeroing and not scale_to_zero:
        raise PermanentError(
            f"{endpoint.id} serves {', '.join(_names(zeroing))}, which scales to zero and must be "
            "the only model on its endpoint: undeploy it first, or use another endpoint"
        )


def expiry_warnings(endpoints: Iterable[Endpoint], now: datetime) -> list[str]:
    """Scale-to-zero deployments near Vertex's auto-undeploy (counted from their last replica
    change, the latest time Vertex reports: the undeploy may come sooner, never later)."""
    warnings = []
    for endpoint in endpoints:
        for d in endpoint.deployments:
            since = d.status_time or d.create_time
            if not d.scales_to_zero or d.available_replicas or since is None:
                continue
            left = since + AUTO_UNDEPLOY - now
            if left <= WARN_BEFORE:
                warnings.append(
                    f"{endpoint.id}/{d.id} ({d.model}:{d.version}) has been at zero replicas since "
                    f"{since:%Y-%m-%d %H:%M} UTC: Vertex undeploys scale-to-zero deployments left "
                    f"at zero for 30 days, in about {max(left.days, 0)} day(s); a prediction resets it"
                )
    return warnings


def wakefulness(
    endpoint: Endpoint | None,
    teardown: Teardown | None,
    operations: Iterable[OperationRecord],
) -> Wakefulness:
    """What an endpoint is now, for either policy; nothing stored, everything observed."""
    if any(r.action in ("deploy", "wake") for r in operations):
        return Wakefulness.WAKING
    deployments = endpoint.deployments if endpoint else ()
    if any(d.available_replicas is None or d.available_replicas > 0 for d in deployments):
        return Wakefulness.READY
    if any(d.scales_to_zero and "scaling up" in d.status_message.lower() for d in deployments):
        return Wakefulness.WAKING
    if deployments and all(d.scales_to_zero for d in deployments):
        return Wakefulness.ASLEEP
    if teardown is not None and teardown.deployments:
        return Wakefulness.ASLEEP
    return Wakefulness.DOWN


def _names(deployments: Iterable[Deployment]) -> list[str]:
    return [f"{d.model}:{d.version}" if d.model else d.id for d in deployments]
