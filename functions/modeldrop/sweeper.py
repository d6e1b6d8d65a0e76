"""The sweep, applied: follow recorded operations, tear down idle deployments, repair drift."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from modeldrop import activity, labels, reconcile, steps, traffic
from modeldrop.context import Context
from modeldrop.errors import ConflictError, ModeldropError, PermanentError, TransientError
from modeldrop.executor import drain, gave_up
from modeldrop.reconcile import Action, Idleness, Report
from modeldrop.records import OperationRecord, RequestState, Teardown
from modeldrop.reporting import once
from modeldrop.resources import Endpoint
from modeldrop.results import Result, Status
from modeldrop.uploads import judge_pending

log = logging.getLogger(__name__)
# Monitoring ingests with a delay: look a little further back than the longest TTL.
MONITORING_SLACK = timedelta(minutes=5)
# One sweep at a time; a lease name no endpoint id can take ('.' is not label-safe).
SWEEP_LOCK = "sweep.lock"
# Dead letters answered per sweep; more wait for the next tick.
DEAD_LETTER_BATCH = 100


@dataclass
class Summary:
    """What one sweep did, for the log line and the benchmark."""

    endpoints: int = 0
    reported: list[str] = field(default_factory=list)
    waiting: int = 0
    torn_down: list[str] = field(default_factory=list)
    stale_leases_cleared: list[str] = field(default_factory=list)
    dead_letters_answered: list[str] = field(default_factory=list)
    started_from_queue: list[str] = field(default_factory=list)  # request ids whose turn came
    steps_started: list[str] = field(default_factory=list)  # <request id>.<step> started in turn
    uploads_judged: list[str] = field(default_factory=list)  # abandoned or completed folders
    monitoring_queries: int = 0
    skipped: bool = False  # another sweep held the sweep lock
    errors: list[str] = field(default_factory=list)  # items left for the next sweep, and why


def sweep(ctx: Context, now: datetime) -> Summary:
    summary = Summary()
    for endpoint_id in ctx.state.stale_leases(now):
        if ctx.state.clear_stale_lease(endpoint_id, now):
            summary.stale_leases_cleared.append(endpoint_id)
    # Ticks come at least once (Scheduler, Pub/Sub, a retried tick while the first still runs):
    # two sweeps at once would both report a request and both tear a deployment down.
    try:
        generation = ctx.state.acquire(SWEEP_LOCK, f"sweep-{uuid.uuid4().hex[:12]}", now)
    except ConflictError as error:
        log.info("not sweeping: %s", error)
        summary.skipped = True
        return summary
    try:
        _sweep(ctx, now, summary)
    finally:
        ctx.state.release(SWEEP_LOCK, generation)
    return summary


def _sweep(ctx: Context, now: datetime, summary: Summary) -> None:
    _answer_dead_letters(ctx, now, summary)
    records = ctx.state.operations()
    endpoints = {e.id: e for e in ctx.vertex.list_managed_endpoints(labels.MANAGED_FILTER)}
    summary.endpoints = len(endpoints)
    for record in records:
        if record.endpoint not in endpoints:
            found = ctx.vertex.endpoint(record.endpoint)
            if found is not None:
                endpoints[found.id] = found
    # One bad item (an operation Vertex no longer knows, a call that fails) must not stop the sweep
    # for every other endpoint: it is logged and left for the next tick.
    operations = {}
    for record in records:
        if record.operation:
            try:
                operations[record.operation] = ctx.vertex.operation(record.operation)
            except Exception as error:
                _skip(summary, f"operation {record.operation}", error)
    busy = set()
    for report in reconcile.follow(records, operations, endpoints, now):
        if report.action is Action.REPORT:
            try:
                _report(ctx, now, report, endpoints.get(report.endpoint))
            except Exception as error:
                _skip(summary, f"reporting {report.request_id}", error)
                continue
            summary.reported.append(report.request_id)
        elif report.action is Action.NEXT:
            busy.add(report.endpoint)
            try:
                _next_step(ctx, now, report, summary)
            except Exception as error:
                _skip(summary, f"the next step of {report.request_id}", error)
        else:
            busy.add(report.endpoint)
            summary.waiting += 1
    busy |= _drain_queues(ctx, now, busy, summary)
    candidates = _idle(ctx, now, list(endpoints.values()), busy, summary)
    for endpoint_id, decisions in candidates.items():
        try:
            with ctx.state.lease(endpoint_id, f"sweep-{now:%Y%m%dT%H%M%S}", now):
                summary.torn_down += _tear_down(ctx, now, endpoint_id, decisions, summary)
        except Exception as error:
            _skip(summary, f"tearing down on {endpoint_id}", error)
    _judge_uploads(ctx, now, summary)


def _next_step(ctx: Context, now: datetime, report: Report, summary: Summary) -> None:
    """Start a request's next deferred step; one Vertex refuses ends the request `failed`."""
    step = min((r for r in report.records if r.deferred), key=lambda r: r.part)
    with ctx.state.lease(report.endpoint, f"sweep-{now:%Y%m%dT%H%M%S}", now):
        try:
            steps.start(ctx, now, step)
        except PermanentError as error:
            done = [r.operation for r in report.records if r.operation]
            failed = Result(
                request_id=report.request_id,
                kind="command",
                action=report.command,
                status=Status.FAILED,
                message=f"{report.command} on {report.endpoint}: step {step.part + 1} of "
                f"{step.parts} could not start: {error}",
                reasons=[*error.reasons, f"{len(done)} earlier step(s) ended"],
                endpoint=report.endpoint,
                details={"operations": done},
            )
            once(ctx, now, failed)
            for record in report.records:
                ctx.state.forget_operation(record)
            return
    summary.steps_started.append(f"{report.request_id}.{step.part}")


def _drain_queues(ctx: Context, now: datetime, busy: set[str], summary: Summary) -> set[str]:
    """Start the commands queued on endpoints whose operations have ended; returns those busy again."""
    try:
        waiting = ctx.state.queue.endpoints()
    except Exception as error:
        _skip(summary, "listing queued commands", error)
        return set()
    again = set()
    for endpoint_id in waiting:
        if endpoint_id in busy:
            continue
        try:
            with ctx.state.lease(endpoint_id, f"sweep-{now:%Y%m%dT%H%M%S}", now):
                started, blocked = drain(ctx, endpoint_id, now)
        except Exception as error:
            _skip(summary, f"starting queued commands on {endpoint_id}", error)
            again.add(endpoint_id)
            continue
        summary.started_from_queue += list(started)
        if blocked or any(not r.terminal for r in started.values()):
            again.add(endpoint_id)
    return again


def _judge_uploads(ctx: Context, now: datetime, summary: Summary) -> None:
    """Folders still incomplete: registered if they completed, rejected if abandoned."""
    try:
        results, problems = judge_pending(ctx, now)
    except Exception as error:
        _skip(summary, "judging pending uploads", error)
        return
    summary.uploads_judged += [r.request_id for r in results]
    for problem in problems:
        _skip(summary, "judging an upload", TransientError(problem))


def _answer_dead_letters(ctx: Context, now: datetime, summary: Summary) -> None:
    """Give each dead-lettered command its `failed` result (once), then acknowledge it."""
    if ctx.dead_letters is None:
        return
    try:
        letters = ctx.dead_letters.pull(DEAD_LETTER_BATCH)
    except ModeldropError as error:
        _skip(summary, "pulling dead letters", error)
        return
    answered = []
    for letter in letters:
        try:
            result = gave_up(letter.data, letter.attributes)
            if result is not None and _in_hand(ctx, result.request_id):
                # A later delivery queued or started it: its own result will come.
                log.info("dead letter %s: %s is in hand", letter.message_id, result.request_id)
            elif result is not None and once(ctx, now, result) is not None:
                summary.dead_letters_answered.append(result.request_id)
        except ModeldropError as error:
            _skip(summary, f"answering dead letter {letter.message_id}", error)
            continue  # not acknowledged: it comes back on a later sweep
        except Exception as error:
            # A fault in modeldrop, not in the platform: retrying would only repeat it every tick.
            _skip(summary, f"answering dead letter {letter.message_id} (acknowledged)", error)
            answered.append(letter.ack_id)
            continue
        if result is None:
            log.warning(
                "dead letter %s names no request; acknowledged: %s",
                letter.message_id,
                letter.attributes,
            )
        answered.append(letter.ack_id)
    try:
        ctx.dead_letters.ack(answered)
    except ModeldropError as error:
        _skip(summary, "acknowledging dead letters", error)


def _in_hand(ctx: Context, request_id: str) -> bool:
    """Whether the request is queued or its operation started (a `failed` now would be false)."""
    record = ctx.state.request(request_id)
    if record is None or record.state is RequestState.DONE:
        return False
    if record.state in (RequestState.QUEUED, RequestState.RECORDED):
        return True
    # Started, then the function died: an intent it recorded is followed like any operation.
    return record.endpoint is not None and any(
        r.request_id == request_id for r in ctx.state.operations(record.endpoint)
    )


def _skip(summary: Summary, what: str, error: Exception) -> None:
    """One bad item is logged and left; the sweep goes on with every other."""
    if isinstance(error, ModeldropError):
        log.warning("sweep: %s left for the next sweep: %s", what, error)
    else:  # not a designed outcome: a person should look
        log.error("sweep: %s failed unexpectedly", what, exc_info=error)
    summary.errors.append(f"{what}: {type(error).__name__}: {error}"[:500])


def _idle(
    ctx: Context, now: datetime, endpoints: list[Endpoint], busy: set[str], summary: Summary
) -> dict[str, list[Idleness]]:
    """Candidates for teardown, from ONE Monitoring query over the longest TTL of all endpoints."""
    serving = [e for e in endpoints if e.deployments]
    if not serving:
        return {}
    window = (
        timedelta(seconds=reconcile.longest_ttl(serving, ctx.settings.default_idle_ttl_s))
        + timedelta(seconds=ctx.settings.metrics_delay_s)
        + MONITORING_SLACK
    )
    last = ctx.monitoring.last_predictions(now - window, now)
    summary.monitoring_queries += 1
    seen = activity.read(ctx.storage, ctx.settings.state_bucket, now)
    candidates: dict[str, list[Idleness]] = {}
    for endpoint in serving:
        for decision in reconcile.idle(
            endpoint,
            last,
            now,
            ctx.settings.default_idle_ttl_s,
            ctx.settings.deploy_grace_s,
            endpoint.id in busy,
            seen,
            ctx.settings.metrics_delay_s,
        ):
            if decision.action is Action.TEAR_DOWN:
                candidates.setdefault(endpoint.id, []).append(decision)
    return candidates


def _tear_down(
    ctx: Context, now: datetime, endpoint_id: str, decisions: list[Idleness], summary: Summary
) -> list[str]:
    """Re-check under the lease (fresh endpoint, fresh traffic), then undeploy what is still idle."""
    endpoint = ctx.vertex.endpoint(endpoint_id)
    if endpoint is None:
        return []
    ttl = max(d.ttl_s for d in decisions)
    delay = timedelta(seconds=ctx.settings.metrics_delay_s)
    last = ctx.monitoring.last_predictions(
        now - timedelta(seconds=ttl) - delay - MONITORING_SLACK, now
    )
    summary.monitoring_queries += 1
    fresh = reconcile.idle(
        endpoint,
        last,
        now,
        ctx.settings.default_idle_ttl_s,
        ctx.settings.deploy_grace_s,
        busy=False,
        activity=activity.read(ctx.storage, ctx.settings.state_bucket, now),
        metrics_delay_s=ctx.settings.metrics_delay_s,
    )
    wanted = {d.deployment.id for d in decisions}
    idle = [d for d in fresh if d.action is Action.TEAR_DOWN and d.deployment.id in wanted]
    if not idle:
        return []
    # One change at a time, lowest traffic first (steps.py): the others stay idle and go in the
    # sweeps after this undeploy has ended.
    share = endpoint.traffic_split
    idle = sorted(idle, key=lambda d: (share.get(d.deployment.id, 0), d.deployment.id))[:1]
    previous = ctx.state.teardown(endpoint_id)
    bodies = list(previous.deployments) if previous else []
    shares = previous.shares if previous and previous.shares else dict(endpoint.traffic_split)
    bodies += [_as_deploy(endpoint, d, shares) for d in idle]
    # Remembered first: `wake` must find what it brings back even if the sweep dies mid-way.
    ctx.state.remember_teardown(
        Teardown(endpoint=endpoint_id, at=now, deployments=bodies, shares=shares)
    )
    remaining = {d.id for d in endpoint.deployments}
    removed: set[str] = set()
    request_ids = []
    for decision in idle:
        removed.add(decision.deployment.id)
        rid = f"teardown-{endpoint_id}-{decision.deployment.id}-{now:%Y%m%dT%H%M%S}"[:128]
        record = OperationRecord(
            request_id=rid,
            action="teardown",
            endpoint=endpoint_id,
            model=decision.deployment.model,
            version=decision.deployment.version,
            deployed_model_id=decision.deployment.id,
            started_at=now,
            details=decision.details,
        )
        ctx.state.record_operation(record)
        name = ctx.vertex.undeploy(
            endpoint_id,
            decision.deployment.id,
            traffic.without(endpoint.traffic_split, removed, remaining),
        )
        ctx.state.record_operation(record.model_copy(update={"operation": name}))
        request_ids.append(rid)
    return request_ids


def _as_deploy(endpoint: Endpoint, decision: Idleness, shares: dict[str, int]) -> dict[str, object]:
    """The deploy command that brings this deployment back as it was (for `wake`), with its
    share of traffic from before the first teardown of this sleep."""
    d = decision.deployment
    return {
        "model": d.model or endpoint.labels.get(labels.MODEL, ""),
        "version": d.version,
        "endpoint": endpoint.id,
        "machine_type": d.machine_type,
        "accelerator": d.accelerator_type,
        "accelerator_count": max(d.accelerator_count, 1),
        "min_replicas": max(d.min_replicas, 1),
        "max_replicas": max(d.max_replicas, d.min_replicas, 1),
        "idle_ttl": decision.ttl_s,
        "keep_warm": False,
        "traffic_percent": shares.get(d.id, endpoint.traffic_split.get(d.id, 100)) or 100,
    }


def _report(ctx: Context, now: datetime, report: Report, endpoint: Endpoint | None) -> None:
    first = report.records[0]
    details: dict[str, object] = dict(first.details) if report.command == "teardown" else {}
    details.pop("command", None)
    details.pop("spec", None)
    details["operations"] = [r.operation for r in report.records]
    result = Result(
        request_id=report.request_id,
        kind="sweep" if report.command == "teardown" else "command",
        action=report.command,
        status=report.status or Status.FAILED,
        message=report.message,
        reasons=list(report.reasons),
        model=first.model,
        version=first.version,
        endpoint=report.endpoint,
        operation=first.operation,
        details=details,
    )
    deleting = _after(ctx, now, report, endpoint) if report.status is not Status.FAILED else None
    if deleting is None or report.command == "teardown":
        once(ctx, now, result)
    # else: a delete-endpoint (or undeploy-then-delete) ends when the endpoint's delete does: the
    # request's result waits for that operation, recorded under the same request id.
    for record in report.records:
        ctx.state.forget_operation(record)


def _after(ctx: Context, now: datetime, report: Report, endpoint: Endpoint | None) -> str | None:
    """Follow-up work a finished request asked for: delete the endpoint once it is empty.

    Deleting an endpoint is a long-running operation of its own and Vertex refuses it while a model
    is still deployed, so it is started only once every undeploy has ended, and recorded: the sweep
    reports it when it ends. Returns the delete's operation name when one was started.
    """
    then_delete = any(r.details.get("then_delete") for r in report.records)
    emptied = report.command == "teardown" and ctx.settings.delete_empty_endpoints
    if not (then_delete or emptied) or endpoint is None:
        return None
    remaining = {d.id for d in endpoint.deployments} - {r.deployed_model_id for r in report.records}
    if remaining:
        return None
    rid = report.request_id if then_delete else f"{report.request_id}-delete"[:128]
    record = OperationRecord(
        request_id=rid, action="delete-endpoint", endpoint=endpoint.id, started_at=now, part=99
    )
    ctx.state.record_operation(record)
    name = ctx.vertex.delete_endpoint(endpoint.id)
    ctx.state.record_operation(record.model_copy(update={"operation": name}))
    if then_delete:
        ctx.state.forget_teardown(endpoint.id)
    return name
