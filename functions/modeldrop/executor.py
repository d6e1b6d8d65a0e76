"""on_command's logic: a typed command becomes a started Vertex operation (or a result), never a wait."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from modeldrop import labels, machines, traffic
from modeldrop.commands import (
    Command,
    DeleteEndpoint,
    Deploy,
    Register,
    Scale,
    Traffic,
    Undeploy,
    Wake,
    parse_command,
)
from modeldrop.context import Context
from modeldrop.errors import ConflictError, PermanentError
from modeldrop.events import PubSubMessage
from modeldrop.layout import VersionFolder
from modeldrop.registry import LATEST_ALIAS, version_alias
from modeldrop.reporting import finish, once
from modeldrop.results import Result, Status
from modeldrop.state import OperationRecord, RequestRecord, RequestState
from modeldrop.uploads import register
from modeldrop.vertex import Deployment, DeploymentSpec, Endpoint

_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def on_message(message: PubSubMessage, ctx: Context, now: datetime) -> Result | None:
    """The result of one commands-topic message (None for a duplicate of a finished request)."""
    try:
        command = parse_command(message.data)
    except PermanentError as error:
        rid = _request_id_in(message.data) or f"invalid-{message.message_id or 'message'}"
        failed = Result(
            request_id=rid,
            kind="command",
            action=_action_in(message.data),
            status=Status.FAILED,
            message=str(error),
            reasons=error.reasons,
        )
        return once(ctx, now, failed)
    issued = command.issued_at or message.publish_time
    max_age = timedelta(seconds=ctx.settings.max_event_age_s)
    if issued is not None and now - issued > max_age:
        dropped = Result(
            request_id=command.request_id,
            kind="command",
            action=command.action,
            status=Status.DROPPED,
            message=f"the command was issued at {issued:%Y-%m-%d %H:%M:%S} UTC, more than {max_age} ago: not acted on",
        )
        return once(ctx, now, dropped)
    return execute(command, ctx, now)


def execute(command: Command, ctx: Context, now: datetime) -> Result | None:
    """Claim the request, take the endpoint's lease, start the work; transient errors propagate."""
    endpoint = None if isinstance(command, Register) else _endpoint_of(command)
    record = RequestRecord(
        request_id=command.request_id,
        kind="command",
        action=command.action,
        state=RequestState.STARTED,
        endpoint=endpoint,
        at=now,
    )
    prior = ctx.state.claim(record)
    if prior is not None and prior.state is not RequestState.STARTED:
        return None  # a duplicate: its operation is recorded or its result is out
    base: dict[str, Any] = {
        "request_id": command.request_id,
        "kind": "command",
        "action": command.action,
        "endpoint": endpoint,
    }
    try:
        if isinstance(command, Register):
            folder = VersionFolder(
                command.bucket or ctx.settings.weights_bucket, command.model, command.version
            )
            return register(folder, ctx, now, request_id=command.request_id)
        assert endpoint is not None  # every other command names (or implies) an endpoint
        with ctx.state.lease(endpoint, command.request_id, now):
            _not_busy(ctx, endpoint, command.request_id)
            result = _HANDLERS[type(command)](command, ctx, now, base)
    except PermanentError as error:
        result = Result(status=Status.FAILED, message=str(error), reasons=error.reasons, **base)
    if result.terminal:
        return finish(ctx, record, result)
    ctx.publisher.publish_result(result)
    ctx.state.update_request(
        record.model_copy(update={"state": RequestState.RECORDED, "operation": result.operation})
    )
    return result


def _deploy(command: Any, ctx: Context, now: datetime, base: dict[str, Any]) -> Result:
    assert isinstance(command, Deploy)
    alias = version_alias(command.version) if command.version else LATEST_ALIAS
    found = ctx.vertex.model_version(command.model, alias)
    if found is None:
        raise PermanentError(
            f"model {command.model} has no version {alias!r}: upload it first (models/{command.model}/<version>/)"
        )
    version = found.labels.get(labels.VERSION) or command.version or alias
    machine_type = command.machine_type or machines.default_machine_type(
        command.accelerator, command.accelerator_count
    )
    problems = machines.check(machine_type, command.accelerator, command.accelerator_count)
    if problems:
        raise PermanentError("the machine can't be deployed", problems)
    ttl = command.idle_ttl if command.idle_ttl is not None else ctx.settings.default_idle_ttl_s
    endpoint = _managed_endpoint(
        ctx, command.endpoint_name, labels.endpoint_labels(command.model, ttl, command.keep_warm)
    )
    spec = DeploymentSpec(
        model=command.model,
        version=version,
        model_resource=found.resource,
        model_version_id=found.version_id,
        deployed_model_id=traffic.deployed_model_id(command.request_id),
        machine_type=machine_type,
        accelerator_type=command.accelerator,
        accelerator_count=command.accelerator_count,
        min_replicas=command.min_replicas,
        max_replicas=command.max_replicas or command.min_replicas,
        traffic_percent=command.traffic_percent,
        service_account=ctx.settings.serving_service_account,
    )
    base = {**base, "model": command.model, "version": version}
    serving = next(
        (
            d
            for d in endpoint.deployments
            if d.id == spec.deployed_model_id or (d.model, d.version) == (spec.model, version)
        ),
        None,
    )
    if serving is not None:
        return Result(
            status=Status.READY,
            message=f"{spec.display_name} already serves on {endpoint.id}",
            details={"deployed_model_id": serving.id},
            **base,
        )
    return _start_deploys(ctx, now, base, endpoint, [spec], command.model_dump(mode="json"))


def _start_deploys(
    ctx: Context,
    now: datetime,
    base: dict[str, Any],
    endpoint: Endpoint,
    specs: list[DeploymentSpec],
    command: dict[str, Any],
) -> Result:
    current = {d.id: endpoint.traffic_split.get(d.id, 0) for d in endpoint.deployments}
    operations = []
    for part, spec in enumerate(specs):
        intent = OperationRecord(
            request_id=base["request_id"],
            action=base["action"],
            endpoint=endpoint.id,
            model=spec.model,
            version=spec.version,
            deployed_model_id=spec.deployed_model_id,
            started_at=now,
            part=part,
            parts=len(specs),
            details={"command": command},
        )
        # The intent goes first: a function that dies right after the deploy starts leaves a trace.
        ctx.state.record_operation(intent)
        split = traffic.with_new(current, spec.traffic_percent)
        name = ctx.vertex.deploy(endpoint.id, spec, split)
        ctx.state.record_operation(intent.model_copy(update={"operation": name}))
        current = {(spec.deployed_model_id if k == traffic.NEW else k): v for k, v in split.items()}
        operations.append(name)
    return Result(
        status=Status.ACCEPTED,
        message=f"deploying to {endpoint.id}; the sweep reports when it serves",
        operation=operations[0],
        details={
            "operations": operations,
            "deployed_model_ids": [s.deployed_model_id for s in specs],
        },
        **base,
    )


def _undeploy(command: Any, ctx: Context, now: datetime, base: dict[str, Any]) -> Result:
    assert isinstance(command, Undeploy)
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
    remaining = {d.id for d in endpoint.deployments}
    removed: set[str] = set()
    operations = []
    for part, target in enumerate(targets):
        removed.add(target.id)
        intent = OperationRecord(
            request_id=base["request_id"],
            action=base["action"],
            endpoint=endpoint.id,
            model=target.model,
            version=target.version,
            deployed_model_id=target.id,
            started_at=now,
            part=part,
            parts=len(targets),
            details={"then_delete": then_delete},
        )
        ctx.state.record_operation(intent)
        # Vertex refuses to undeploy a model that keeps traffic: hand its share to the others first.
        split = traffic.without(endpoint.traffic_split, removed, remaining)
        name = ctx.vertex.undeploy(endpoint.id, target.id, split)
        ctx.state.record_operation(intent.model_copy(update={"operation": name}))
        operations.append(name)
    return Result(
        status=Status.ACCEPTED,
        message=f"undeploying {len(targets)} deployment(s) from {endpoint.id}",
        operation=operations[0],
        details={"operations": operations},
        **base,
    )


def _scale(command: Any, ctx: Context, now: datetime, base: dict[str, Any]) -> Result:
    assert isinstance(command, Scale)
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


def _traffic(command: Any, ctx: Context, now: datetime, base: dict[str, Any]) -> Result:
    assert isinstance(command, Traffic)
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


def _delete_endpoint(command: Any, ctx: Context, now: datetime, base: dict[str, Any]) -> Result:
    assert isinstance(command, DeleteEndpoint)
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


def _wake(command: Any, ctx: Context, now: datetime, base: dict[str, Any]) -> Result:
    assert isinstance(command, Wake)
    teardown = ctx.state.teardown(command.endpoint)
    if teardown is None or not teardown.deployments:
        existing = ctx.vertex.endpoint(command.endpoint)
        if existing is not None and existing.deployments:
            return Result(status=Status.SUCCEEDED, message=f"{existing.id} is awake", **base)
        raise PermanentError(f"nothing was torn down on {command.endpoint}: send a deploy command")
    specs = []
    endpoint_labels: dict[str, str] = {}
    for part, body in enumerate(teardown.deployments):
        deploy = parse_command({**body, "action": "deploy", "request_id": command.request_id})
        assert isinstance(deploy, Deploy)
        found = ctx.vertex.model_version(
            deploy.model, version_alias(deploy.version) if deploy.version else LATEST_ALIAS
        )
        if found is None:
            raise PermanentError(f"{deploy.model} version {deploy.version} is no longer registered")
        ttl = deploy.idle_ttl if deploy.idle_ttl is not None else ctx.settings.default_idle_ttl_s
        endpoint_labels = labels.endpoint_labels(deploy.model, ttl, deploy.keep_warm)
        specs.append(
            DeploymentSpec(
                model=deploy.model,
                version=deploy.version or found.labels.get(labels.VERSION, ""),
                model_resource=found.resource,
                model_version_id=found.version_id,
                deployed_model_id=traffic.deployed_model_id(command.request_id, str(part)),
                machine_type=deploy.machine_type
                or machines.default_machine_type(deploy.accelerator, deploy.accelerator_count),
                accelerator_type=deploy.accelerator,
                accelerator_count=deploy.accelerator_count,
                min_replicas=deploy.min_replicas,
                max_replicas=deploy.max_replicas or deploy.min_replicas,
                traffic_percent=deploy.traffic_percent,
                service_account=ctx.settings.serving_service_account,
            )
        )
    endpoint = _managed_endpoint(ctx, command.endpoint, endpoint_labels)
    result = _start_deploys(
        ctx, now, base, endpoint, specs, {"action": "wake", "endpoint": command.endpoint}
    )
    ctx.state.forget_teardown(command.endpoint)
    return result


_HANDLERS = {
    Deploy: _deploy,
    Undeploy: _undeploy,
    Scale: _scale,
    Traffic: _traffic,
    DeleteEndpoint: _delete_endpoint,
    Wake: _wake,
}


def _not_busy(ctx: Context, endpoint: str, request_id: str) -> None:
    """One operation at a time per endpoint: Vertex splits traffic only over what is deployed."""
    others = sorted(
        {r.request_id for r in ctx.state.operations(endpoint) if r.request_id != request_id}
    )
    if others:
        raise ConflictError(f"endpoint {endpoint} is busy with {', '.join(others)}; retrying later")


def _managed_endpoint(ctx: Context, endpoint_id: str, wanted: dict[str, str]) -> Endpoint:
    endpoint = ctx.vertex.endpoint(endpoint_id)
    if endpoint is None:
        return ctx.vertex.create_endpoint(endpoint_id, wanted)
    if not labels.is_managed(endpoint.labels):
        raise PermanentError(
            f"endpoint {endpoint_id} exists and is not managed by modeldrop: pick another endpoint name"
        )
    merged = {**endpoint.labels, **wanted}
    if merged != endpoint.labels:
        ctx.vertex.set_endpoint_labels(endpoint_id, merged)
    return endpoint


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


def _endpoint_of(command: Command) -> str:
    if isinstance(command, Deploy):
        return command.endpoint_name
    if isinstance(command, Register):
        raise TypeError("register names a folder, not an endpoint")
    return command.endpoint


def _request_id_in(data: bytes) -> str | None:
    try:
        body = json.loads(data)
    except ValueError:
        return None
    rid = body.get("request_id") if isinstance(body, dict) else None
    return rid if isinstance(rid, str) and _REQUEST_ID.match(rid) else None


def _action_in(data: bytes) -> str:
    try:
        body = json.loads(data)
    except ValueError:
        return "unknown"
    action = body.get("action") if isinstance(body, dict) else None
    return action if isinstance(action, str) and len(action) <= 40 else "unknown"
