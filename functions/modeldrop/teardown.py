"""The sweep's idle teardown: which deployments served nothing for their TTL, re-checked under the
endpoint's lease, and undeployed one at a time (lowest traffic first), remembered for `wake`."""

from __future__ import annotations

from datetime import datetime, timedelta

from modeldrop import activity, labels, placements, reconcile, traffic
from modeldrop.context import Context
from modeldrop.reconcile import Action, Idleness
from modeldrop.records import OperationRecord, Teardown
from modeldrop.resources import Endpoint
from modeldrop.sweep_summary import Summary

# Monitoring ingests with a delay: look a little further back than the longest TTL.
MONITORING_SLACK = timedelta(minutes=5)


def candidates(
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
    ready = ctx.state.ready_times()
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
            ready,
        ):
            if decision.action is Action.TEAR_DOWN:
                candidates.setdefault(endpoint.id, []).append(decision)
    return candidates


def tear_down(
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
        ready_at=ctx.state.ready_times(),
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
    for d in idle:
        # What the deployment was started with, so `wake` starts it so again (the record itself
        # goes when the undeploy has ended).
        kept = ctx.state.serving_args(endpoint_id, d.deployment.id)
        listed = ctx.state.ready_placements(endpoint_id, d.deployment.id)
        bodies.append(_as_deploy(endpoint, d, shares, kept.args if kept else None, listed))
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


def _as_deploy(
    endpoint: Endpoint,
    decision: Idleness,
    shares: dict[str, int],
    serving_args: list[str] | None,
    listed: list[dict[str, object]],
) -> dict[str, object]:
    """The deploy command that brings this deployment back as it was (for `wake`), with its
    share of traffic from before the first teardown of this sleep. A deploy that listed
    placements keeps them, the machine that served (as Vertex reports it) first."""
    d = decision.deployment
    served: dict[str, object] = {
        "machine_type": d.machine_type,
        "accelerator": d.accelerator_type,
        "accelerator_count": max(d.accelerator_count, 1),
    }
    machine: dict[str, object] = (
        {"placements": placements.served_first(served, listed)} if len(listed) > 1 else served
    )
    return {
        "model": d.model or endpoint.labels.get(labels.MODEL, ""),
        "version": d.version,
        "endpoint": endpoint.id,
        **machine,
        "min_replicas": max(d.min_replicas, 1),
        "max_replicas": max(d.max_replicas, d.min_replicas, 1),
        "idle_ttl": decision.ttl_s,
        "keep_warm": False,
        "traffic_percent": shares.get(d.id, endpoint.traffic_split.get(d.id, 100)) or 100,
        **({"serving_args": serving_args} if serving_args else {}),
    }
