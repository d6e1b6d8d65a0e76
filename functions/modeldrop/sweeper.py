"""The sweep, applied: follow recorded operations, tear down idle deployments, repair drift."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from modeldrop import adapters, idle_policy, labels, placing, reconcile, steps, teardown
from modeldrop.context import Context
from modeldrop.dead_letters import answer_dead_letters
from modeldrop.errors import ConflictError, PermanentError, TransientError
from modeldrop.executor import drain
from modeldrop.reconcile import Action, Report
from modeldrop.records import OperationRecord
from modeldrop.reporting import once, publish_staged
from modeldrop.resources import Endpoint
from modeldrop.results import Result, Status
from modeldrop.sweep_summary import Summary, skip
from modeldrop.uploads import judge_pending

log = logging.getLogger(__name__)
# One sweep at a time; a lease name no endpoint id can take ('.' is not label-safe).
SWEEP_LOCK = "sweep.lock"


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
    try:
        summary.results_published += publish_staged(ctx, now)
    except Exception as error:
        skip(summary, "publishing staged results", error)
    answer_dead_letters(ctx, now, summary)
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
                skip(summary, f"operation {record.operation}", error)
    busy = set()
    for report in reconcile.follow(records, operations, endpoints, now):
        if report.action is Action.REPORT:
            try:
                _report(ctx, now, report, endpoints.get(report.endpoint))
            except Exception as error:
                skip(summary, f"reporting {report.request_id}", error)
                continue
            summary.reported.append(report.request_id)
        elif report.action is Action.NEXT:
            busy.add(report.endpoint)
            try:
                _next_step(ctx, now, report, summary)
            except Exception as error:
                skip(summary, f"the next step of {report.request_id}", error)
        elif report.action is Action.FALLBACK:
            busy.add(report.endpoint)
            try:
                _fall_back(ctx, now, report, summary)
            except Exception as error:
                skip(summary, f"the next placement of {report.request_id}", error)
        else:
            busy.add(report.endpoint)
            summary.waiting += 1
    busy |= _drain_queues(ctx, now, busy, summary)
    # Scale-to-zero deployments are Vertex's to scale; the sweep only warns before Vertex's own
    # auto-undeploy (their teardown never runs: reconcile.idle keeps them).
    for warning in idle_policy.expiry_warnings(endpoints.values(), now):
        log.warning("sweep: %s", warning)
        summary.expiring.append(warning)
    candidates = teardown.candidates(ctx, now, list(endpoints.values()), busy, summary)
    for endpoint_id, decisions in candidates.items():
        try:
            with ctx.state.lease(endpoint_id, f"sweep-{now:%Y%m%dT%H%M%S}", now):
                summary.torn_down += teardown.tear_down(ctx, now, endpoint_id, decisions, summary)
        except Exception as error:
            skip(summary, f"tearing down on {endpoint_id}", error)
    _judge_uploads(ctx, now, summary)
    try:
        summary.adapter_indexes_repaired += adapters.repair_indexes(ctx)
    except Exception as error:
        skip(summary, "the adapter indexes", error)


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


def _fall_back(ctx: Context, now: datetime, report: Report, summary: Summary) -> None:
    """Start a stocked-out deploy step again on its next placement (the same request and part)."""
    assert report.step is not None  # reconcile sets it on every FALLBACK
    with ctx.state.lease(report.endpoint, f"sweep-{now:%Y%m%dT%H%M%S}", now):
        following = placing.next_placement(ctx, report.step, report.reasons[0])
        if following is None:
            return
        try:
            steps.start(ctx, now, following)
        except PermanentError as error:
            # Quota for the next machine, or every placement left refused at the request.
            failed = Result(
                request_id=report.request_id,
                kind="command",
                action=report.command,
                status=Status.FAILED,
                message=f"{report.command} on {report.endpoint}: no placement could serve",
                reasons=[*placing.refusals(following), *error.reasons],
                endpoint=report.endpoint,
                model=following.model,
                version=following.version,
            )
            once(ctx, now, failed)
            placing.forget_serving_args(ctx, following)
            for record in report.records:
                ctx.state.forget_operation(record)
            return
    summary.steps_started.append(f"{report.request_id}.{following.part}:placement")


def _drain_queues(ctx: Context, now: datetime, busy: set[str], summary: Summary) -> set[str]:
    """Start the commands queued on endpoints whose operations have ended; returns those busy again."""
    try:
        waiting = ctx.state.queue.endpoints()
    except Exception as error:
        skip(summary, "listing queued commands", error)
        return set()
    again = set()
    for endpoint_id in waiting:
        if endpoint_id in busy:
            continue
        try:
            with ctx.state.lease(endpoint_id, f"sweep-{now:%Y%m%dT%H%M%S}", now):
                started, blocked = drain(ctx, endpoint_id, now)
        except Exception as error:
            skip(summary, f"starting queued commands on {endpoint_id}", error)
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
        skip(summary, "judging pending uploads", error)
        return
    summary.uploads_judged += [r.request_id for r in results]
    for problem in problems:
        skip(summary, "judging an upload", TransientError(problem))


def _report(ctx: Context, now: datetime, report: Report, endpoint: Endpoint | None) -> None:
    first = report.records[0]
    details: dict[str, object] = dict(first.details) if report.command == "teardown" else {}
    details.pop("command", None)
    details.pop("spec", None)
    details["operations"] = [r.operation for r in report.records]
    suffix, placed, refused = placing.outcome(report.records)
    details.update(placed)
    result = Result(
        request_id=report.request_id,
        kind="sweep" if report.command == "teardown" else "command",
        action=report.command,
        status=report.status or Status.FAILED,
        message=f"{report.message}: {suffix}" if suffix else report.message,
        reasons=[*refused, *report.reasons],
        model=first.model,
        version=first.version,
        endpoint=report.endpoint,
        operation=first.operation,
        details=details,
    )
    _note_deploys(ctx, now, report, endpoint)
    deleting = _after(ctx, now, report, endpoint) if report.status is not Status.FAILED else None
    if deleting is None or report.command == "teardown":
        once(ctx, now, result)
    # else: a delete-endpoint (or undeploy-then-delete) ends when the endpoint's delete does: the
    # request's result waits for that operation, recorded under the same request id.
    for record in report.records:
        ctx.state.forget_operation(record)


def _note_deploys(ctx: Context, now: datetime, report: Report, endpoint: Endpoint | None) -> None:
    """A deploy seen to end starts its grace and TTL now; an undeploy's deployment is forgotten,
    and so are the serving args of a deployment that is gone (undeployed, or never deployed)."""
    deployed = {d.id for d in endpoint.deployments} if endpoint else set()
    for record in report.records:
        if not record.deployed_model_id:
            continue
        if record.action in ("deploy", "wake") and report.status is Status.READY:
            tried = placing.served_first(record)
            ctx.state.remember_ready(record.endpoint, record.deployed_model_id, now, tried)
        elif record.action in ("deploy", "wake") and record.deployed_model_id not in deployed:
            # A failed request: this step never deployed (an earlier step of a wake may have).
            ctx.state.forget_serving_args(record.endpoint, record.deployed_model_id)
        elif record.action in ("undeploy", "teardown", "delete-endpoint"):
            ctx.state.forget_ready(record.endpoint, record.deployed_model_id)
            if report.status is not Status.FAILED:  # still deployed: its replicas may restart
                ctx.state.forget_serving_args(record.endpoint, record.deployed_model_id)


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
