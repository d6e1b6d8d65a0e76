"""Changes to a serving endpoint: undeploy, scale, traffic split, delete."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from modeldrop import labels, steps
from modeldrop.commands import DeleteEndpoint, Scale, Traffic, Undeploy
from modeldrop.context import Context
from modeldrop.errors import PermanentError
from modeldrop.records import OperationRecord
from modeldrop.resources import Deployment, Endpoint
from modeldrop.results import Result, Status


def undeploy(command: Undeploy, ctx: Context, now: datetime, base: dict[str, Any]) -> Result:
    # "Nothing to do" is success everywhere (as for delete-endpoint): the state asked for holds.
    if ctx.vertex.endpoint(command.endpoint) is None:
        return Result(
            status=Status.SUCCEEDED,
            message=f"endpoint {command.endpoint} does not exist: nothing to undeploy",
            **base,
        )
    endpoint = _existing(ctx, command.endpoint)
    targets = [d for d in endpoint.deployments if command.version in (None, d.version)]
    if not targets:
        what = f"version {command.version}" if command.version else "anything"
        return Result(
            status=Status.SUCCEEDED,
            message=f"{endpoint.id} does not serve {what}: nothing to undeploy",
            **base,
        )
    return _start_undeploys(ctx, now, base, endpoint, targets, then_delete=False)


def _start_undeploys(
    ctx: Context,
    now: datetime,
    base: dict[str, Any],
    endpoint: Endpoint,
    targets: list[Deployment],
    then_delete: bool,
) -> Result:
    """Undeploy `targets` one at a time, lowest traffic first (steps.py says why)."""
    ordered = sorted(targets, key=lambda d: (endpoint.traffic_split.get(d.id, 0), d.id))
    records = [
        OperationRecord(
            request_id=base["request_id"],
            action=base["action"],
            endpoint=endpoint.id,
            model=target.model,
            version=target.version,
            deployed_model_id=target.id,
            started_at=now,
            details={"then_delete": then_delete},
        )
        for target in ordered
    ]
    name = steps.plan(ctx, now, records, endpoint)
    return Result(
        status=Status.ACCEPTED,
        message=f"undeploying {len(ordered)} deployment(s) from {endpoint.id}, one at a time",
        operation=name,
        details={"operations": [name] if name else [], "steps": len(ordered)},
        **base,
    )


def scale(command: Scale, ctx: Context, now: datetime, base: dict[str, Any]) -> Result:
    endpoint = _existing(ctx, command.endpoint)
    target = _one_deployment(endpoint, command.version)
    maximum = command.max_replicas or command.min_replicas
    record = OperationRecord(
        request_id=base["request_id"],
        action="scale",
        endpoint=endpoint.id,
        model=target.model,
        version=target.version,
        deployed_model_id=target.id,
        started_at=now,
    )
    ctx.state.record_operation(record)
    name = ctx.vertex.scale(endpoint.id, target.id, command.min_replicas, maximum)
    ctx.state.record_operation(record.model_copy(update={"operation": name}))
    return Result(
        status=Status.ACCEPTED,
        message=f"scaling {target.id} on {endpoint.id} to {command.min_replicas}-{maximum} replicas",
        operation=name,
        **base,
    )


def split_traffic(command: Traffic, ctx: Context, now: datetime, base: dict[str, Any]) -> Result:
    endpoint = _existing(ctx, command.endpoint)
    by_version = {d.version: d.id for d in endpoint.deployments if d.version}
    unknown = sorted(v for v in command.split if v not in by_version)
    if unknown:
        raise PermanentError(
            "the split names versions the endpoint doesn't serve",
            [
                f"{endpoint.id} does not serve version {v}; it serves {', '.join(sorted(by_version)) or 'nothing'}"
                for v in unknown
            ],
        )
    split = {d.id: 0 for d in endpoint.deployments}
    split.update({by_version[v]: percent for v, percent in command.split.items()})
    ctx.vertex.set_traffic(endpoint.id, split)
    return Result(
        status=Status.SUCCEEDED,
        message=f"{endpoint.id} traffic: {', '.join(f'{v} {p}%' for v, p in command.split.items())}",
        details={"traffic_split": split},
        **base,
    )


def delete_endpoint(
    command: DeleteEndpoint, ctx: Context, now: datetime, base: dict[str, Any]
) -> Result:
    endpoint = ctx.vertex.endpoint(command.endpoint)
    if endpoint is None:
        return Result(
            status=Status.SUCCEEDED, message=f"endpoint {command.endpoint} does not exist", **base
        )
    if not labels.is_managed(endpoint.labels):
        raise PermanentError(
            f"endpoint {endpoint.id} is not managed by modeldrop; delete it yourself"
        )
    if endpoint.deployments:
        if not command.force:
            raise PermanentError(
                f"endpoint {endpoint.id} still serves {len(endpoint.deployments)} deployment(s): undeploy first, or send force: true"
            )
        return _start_undeploys(
            ctx, now, base, endpoint, list(endpoint.deployments), then_delete=True
        )
    record = OperationRecord(
        request_id=base["request_id"],
        action="delete-endpoint",
        endpoint=endpoint.id,
        started_at=now,
    )
    ctx.state.record_operation(record)
    name = ctx.vertex.delete_endpoint(endpoint.id)
    ctx.state.record_operation(record.model_copy(update={"operation": name}))
    ctx.state.forget_teardown(endpoint.id)
    return Result(status=Status.ACCEPTED, message=f"deleting {endpoint.id}", operation=name, **base)


def _existing(ctx: Context, endpoint_id: str) -> Endpoint:
    endpoint = ctx.vertex.endpoint(endpoint_id)
    if endpoint is None:
        raise PermanentError(f"endpoint {endpoint_id} does not exist")
    if not labels.is_managed(endpoint.labels):
        raise PermanentError(f"endpoint {endpoint_id} is not managed by modeldrop")
    return endpoint


def _one_deployment(endpoint: Endpoint, version: str | None) -> Deployment:
    matching = [d for d in endpoint.deployments if version in (None, d.version)]
    if not matching:
        raise PermanentError(
            f"{endpoint.id} does not serve {f'version {version}' if version else 'anything'}"
        )
    if len(matching) > 1:
        raise PermanentError(
            f"{endpoint.id} serves several versions ({', '.join(str(d.version) for d in matching)}): name one"
        )
    return matching[0]
