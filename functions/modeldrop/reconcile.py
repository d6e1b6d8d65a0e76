"""The sweep's decisions, pure: facts and `now` in, actions out (no cloud imports, no clock).

`follow` turns recorded operations into terminal reports once every part of a request ended (or
into the start of its next step, one change at a time);
`idle` picks deployments that served nothing for their TTL. Another layer (sweeper) applies them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from modeldrop import labels, placements
from modeldrop.placements import Refusal
from modeldrop.records import OperationRecord, Seen
from modeldrop.resources import Deployment, Endpoint, Operation
from modeldrop.results import Status

# A function that died between starting an operation and recording it leaves an intent; if Vertex
# shows no effect of it after this long, the request is reported failed.
INTENT_TIMEOUT = timedelta(hours=3)


class Action(StrEnum):
    """What the sweep does about one request or deployment."""

    REPORT = "report"  # every operation of a request ended: publish its one terminal result
    NEXT = "next"  # the request's started steps ended well: start its next deferred step
    FALLBACK = "fallback"  # a deploy step's placement was stocked out: the step tries its next
    WAIT = "wait"  # an operation still runs (or an intent may still take effect)
    TEAR_DOWN = "tear_down"  # a deployment served nothing for its idle TTL: undeploy it
    KEEP = "keep"  # a deployment stays (traffic in its window, grace, keep-warm, TTL 0, busy)


@dataclass(frozen=True)
class Report:
    action: Action
    request_id: str
    command: str  # the request's action (deploy, undeploy, teardown, ...)
    endpoint: str
    status: Status | None
    records: tuple[OperationRecord, ...]
    message: str = ""
    reasons: tuple[str, ...] = ()
    step: OperationRecord | None = None  # FALLBACK: the step whose placement was refused


@dataclass(frozen=True)
class Idleness:
    action: Action
    endpoint: str
    deployment: Deployment
    why: str
    idle_s: int = 0
    ttl_s: int = 0
    details: dict[str, Any] = field(default_factory=dict)


_SUCCESS = {"deploy": Status.READY, "wake": Status.READY, "teardown": Status.TORN_DOWN}


def follow(
    records: Iterable[OperationRecord],
    operations: Mapping[str, Operation],
    endpoints: Mapping[str, Endpoint],
    now: datetime,
) -> list[Report]:
    """One report per request: REPORT with the terminal status once all its parts ended, else WAIT."""
    groups: dict[str, list[OperationRecord]] = defaultdict(list)
    for record in records:
        groups[record.request_id].append(record)
    reports = []
    for request_id, parts in sorted(groups.items()):
        parts.sort(key=lambda r: r.part)
        first = parts[0]
        started = [r for r in parts if not r.deferred]
        outcomes = [_outcome(r, operations, endpoints.get(r.endpoint), now) for r in started]
        if len(parts) < first.parts or any(o is None for o in outcomes):
            reports.append(
                Report(Action.WAIT, request_id, first.action, first.endpoint, None, tuple(parts))
            )
            continue
        stocked_out = next(
            (r for r, o in zip(started, outcomes, strict=True) if o and _can_fall_back(r, o)),
            None,
        )
        if stocked_out is not None:
            why = outcomes[started.index(stocked_out)] or ""
            reports.append(
                Report(
                    Action.FALLBACK,
                    request_id,
                    first.action,
                    first.endpoint,
                    None,
                    tuple(parts),
                    reasons=(why,),
                    step=stocked_out,
                )
            )
            continue
        errors = tuple(o for o in outcomes if o)
        later = len(parts) - len(started)
        if errors and later:
            errors += (f"{later} later step(s) not started",)
        if not errors and later:
            reports.append(
                Report(Action.NEXT, request_id, first.action, first.endpoint, None, tuple(parts))
            )
            continue
        if errors:
            reports.append(
                Report(
                    Action.REPORT,
                    request_id,
                    first.action,
                    first.endpoint,
                    Status.FAILED,
                    tuple(parts),
                    f"{first.action} on {first.endpoint} failed",
                    errors,
                )
            )
        else:
            status = _SUCCESS.get(first.action, Status.SUCCEEDED)
            reports.append(
                Report(
                    Action.REPORT,
                    request_id,
                    first.action,
                    first.endpoint,
                    status,
                    tuple(parts),
                    f"{first.action} on {first.endpoint} done",
                )
            )
    return reports


def _can_fall_back(record: OperationRecord, error: str) -> bool:
    """A deploy refused for a stockout (never for quota) with a placement left to try."""
    left = len(record.details.get("placements") or []) - int(record.details.get("placement", 0))
    return (
        record.action in ("deploy", "wake")
        and left > 1
        and placements.refusal(error) is Refusal.STOCKOUT
    )


def _outcome(
    record: OperationRecord,
    operations: Mapping[str, Operation],
    endpoint: Endpoint | None,
    now: datetime,
) -> str | None:
    """None while running; "" when it ended well; the reason when it failed."""
    if record.operation is None:
        return _intent_outcome(record, endpoint, now)
    operation = operations.get(record.operation)
    if operation is None or not operation.done:
        return None
    if operation.error:
        tail = operation.details.get("log_tail")
        return f"Vertex: {operation.error}" + (f"\nlog tail:\n{tail}" if tail else "")
    return ""


def _intent_outcome(
    record: OperationRecord, endpoint: Endpoint | None, now: datetime
) -> str | None:
    """Judge an unrecorded operation by its effect, since only Vertex knows whether it started."""
    present = endpoint is not None and any(
        d.id == record.deployed_model_id for d in endpoint.deployments
    )
    if record.action in ("deploy", "wake") and present:
        return ""
    if (
        record.action in ("undeploy", "teardown", "delete-endpoint")
        and not present
        and record.deployed_model_id
    ):
        return ""
    if record.action == "delete-endpoint" and endpoint is None:
        return ""
    if now - record.started_at > INTENT_TIMEOUT:
        return f"the function stopped before recording its operation and Vertex shows no effect after {INTENT_TIMEOUT}: send the command again"
    return None


def idle(
    endpoint: Endpoint,
    last_predictions: Mapping[tuple[str, str], datetime],
    now: datetime,
    default_ttl_s: int,
    grace_s: int,
    busy: bool,
    activity: Mapping[tuple[str, str], Seen] | None = None,
    metrics_delay_s: int = 0,
    ready_at: Mapping[tuple[str, str], datetime] | None = None,
) -> list[Idleness]:
    """For each deployment on `endpoint`: TEAR_DOWN when it served nothing for its TTL, else KEEP and why.

    Idle is never inferred from missing data: Monitoring's latest `metrics_delay_s` are not ingested
    yet, so a deployment without the container's own activity record must be silent for its TTL
    plus that delay; one with a record is judged by the record (every route) and Monitoring together.

    The TTL and the deploy grace run from when the deploy ended, by our own record (`ready_at`,
    written by the sweep that reported it ready): Vertex's `DeployedModel.create_time` is only
    documented as "when the DeployedModel was created" and may be the deploy's start, 10-20 min
    earlier for a GPU deploy. The later of the two is used, so either reading is safe.
    """
    activity = activity or {}
    ready_at = ready_at or {}
    ttl = labels.idle_ttl_seconds(endpoint.labels, default_ttl_s)
    decisions = []
    for deployment in endpoint.deployments:

        def keep(why: str, d: Deployment = deployment) -> Idleness:
            return Idleness(Action.KEEP, endpoint.id, d, why, ttl_s=ttl)

        if not labels.is_managed(endpoint.labels):
            decisions.append(keep("not managed by modeldrop"))
        elif deployment.scales_to_zero:
            decisions.append(keep("idle policy scale-to-zero: Vertex scales it to zero itself"))
        elif labels.keep_warm(endpoint.labels):
            decisions.append(keep("keep-warm"))
        elif ttl <= 0:
            decisions.append(keep("idle TTL 0: never torn down for idleness"))
        elif busy:
            decisions.append(keep("an operation on the endpoint is in flight"))
        elif (
            deployed := _deployed_at(deployment, ready_at.get((endpoint.id, deployment.id)))
        ) is None:
            decisions.append(keep("Vertex reports no deploy time"))
        elif (seen := activity.get((endpoint.id, deployment.id))) is not None and seen.busy():
            decisions.append(keep(f"{seen.in_flight} request(s) in flight"))
        elif (now - deployed).total_seconds() < max(
            ttl + (0 if seen else metrics_delay_s), grace_s
        ):
            decisions.append(keep("deployed less than its TTL (or the grace period) ago"))
        else:
            last = last_predictions.get((endpoint.id, deployment.id))
            if seen is not None and seen.last_request_at is not None:
                last = max(last or seen.last_request_at, seen.last_request_at)
            if last is not None and (now - last).total_seconds() < ttl:
                decisions.append(
                    keep(f"served predictions {int((now - last).total_seconds())} s ago")
                )
                continue
            quiet_s = (now - max(last or deployed, deployed)).total_seconds()
            if seen is None and quiet_s < ttl + metrics_delay_s:
                decisions.append(
                    keep(
                        f"Monitoring's last {metrics_delay_s} s are not ingested yet and the "
                        "deployment writes no activity records: idleness not yet known"
                    )
                )
                continue
            since = max(last or deployed, deployed)
            idle_s = int((now - since).total_seconds())
            gpus = max(deployment.accelerator_count, 0) * max(deployment.min_replicas, 1)
            details = {
                "deployed_model_id": deployment.id,
                "idle_s": idle_s,
                "idle_ttl_s": ttl,
                "accelerator": deployment.accelerator_type,
                "gpus": gpus,
                "gpu_hours_idle": round(gpus * idle_s / 3600, 3),
                "gpu_hours_saved_per_day": gpus * 24,
                "last_prediction": last.isoformat() if last else None,
            }
            decisions.append(
                Idleness(
                    Action.TEAR_DOWN,
                    endpoint.id,
                    deployment,
                    f"no predictions for {idle_s} s (TTL {ttl} s)",
                    idle_s,
                    ttl,
                    details,
                )
            )
    return decisions


def _deployed_at(deployment: Deployment, ready: datetime | None) -> datetime | None:
    """When the deployment started serving: the later of Vertex's create time and our record."""
    return max((t for t in (deployment.create_time, ready) if t is not None), default=None)


def longest_ttl(endpoints: Iterable[Endpoint], default_ttl_s: int) -> int:
    """The window the sweep's one Monitoring query must cover."""
    return max(
        (labels.idle_ttl_seconds(e.labels, default_ttl_s) for e in endpoints), default=default_ttl_s
    )
