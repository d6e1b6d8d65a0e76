"""Deploys and wakes: resolve the version and machine, create or reuse the endpoint, start the deploy."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from modeldrop import idle_policy, labels, placements, placing, steps, traffic
from modeldrop.commands import Deploy, Wake
from modeldrop.context import Context
from modeldrop.errors import PermanentError
from modeldrop.naming import version_alias
from modeldrop.records import OperationRecord, ServingArgs
from modeldrop.registry import LATEST_ALIAS
from modeldrop.resources import Deployment, DeploymentSpec, Endpoint, ModelVersion
from modeldrop.results import Result, Status


def deploy(command: Deploy, ctx: Context, now: datetime, base: dict[str, Any]) -> Result:
    alias = version_alias(command.version) if command.version else LATEST_ALIAS
    found = ctx.vertex.model_version(command.model, alias)
    if found is None:
        raise PermanentError(
            f"model {command.model} has no version {alias!r}: upload it first (models/{command.model}/<version>/)"
        )
    version = found.labels.get(labels.VERSION) or command.version or alias
    tried = placements.resolve(command.placement_list())
    ttl = command.idle_ttl if command.idle_ttl is not None else ctx.settings.default_idle_ttl_s
    zero = command.idle_policy == "scale-to-zero"
    period, clamped = idle_policy.scale_to_zero_period(ttl) if zero else (None, "")
    wanted = labels.endpoint_labels(command.model, period or ttl, command.keep_warm)
    # A redeploy that doesn't name the TTL or keep-warm keeps what the endpoint has: only a new
    # endpoint (or one without the label) takes the default.
    unset = {labels.IDLE_TTL: "idle_ttl", labels.KEEP_WARM: "keep_warm"}
    keep = {label for label, field in unset.items() if field not in command.model_fields_set}
    dm_id = traffic.deployed_model_id(command.request_id)
    spec = replace(_spec(command, found, version, tried[0], dm_id), scale_to_zero_s=period)
    base = {**base, "model": command.model, "version": version}
    existing = ctx.vertex.endpoint(command.endpoint_name)
    serving = next(
        (
            d
            for d in (existing.deployments if existing else ())
            if d.id == spec.deployed_model_id or (d.model, d.version) == (spec.model, version)
        ),
        None,
    )
    if existing is not None and serving is not None:
        if serving.scales_to_zero != zero:
            policy = "scale-to-zero" if serving.scales_to_zero else "teardown"
            raise PermanentError(
                f"{spec.display_name} already serves on {existing.id} with idle policy {policy}: "
                "undeploy it first to change the policy"
            )
        unlike = _unlike_serving(ctx, command, tried, existing.id, serving)
        if unlike:
            # Every field is honoured or refused: answering `ready` would drop what was asked.
            raise PermanentError(
                f"{spec.display_name} already serves on {existing.id}, not as this deploy asks: "
                "undeploy it first, or deploy to another endpoint",
                unlike,
            )
        managed_endpoint(ctx, command.endpoint_name, wanted, keep)
        return Result(
            status=Status.READY,
            message=f"{spec.display_name} already serves on {existing.id}",
            details={"deployed_model_id": serving.id},
            **base,
        )
    if existing is not None:
        # Vertex's scale-to-zero limits, refused here rather than minutes later by Vertex.
        idle_policy.check_endpoint(existing, zero)
    endpoint = managed_endpoint(ctx, command.endpoint_name, wanted, keep, dedicated=zero)
    remember_serving_args(ctx, endpoint.id, spec, command.serving_args, command.request_id)
    result = start_deploys(
        ctx, now, base, endpoint, [(spec, tried)], command.model_dump(mode="json"), clamped
    )
    if not clamped:
        return result
    return result.model_copy(update={"message": f"{result.message}; {clamped}"})


def _unlike_serving(
    ctx: Context,
    command: Deploy,
    tried: list[dict[str, Any]],
    endpoint_id: str,
    serving: Deployment,
) -> list[str]:
    """How the deployment already serving differs from what the deploy names explicitly: its
    machine (none of the placements asked for), its replica counts, its serving args."""
    asked = command.model_fields_set
    problems = []
    running = _machine(serving.machine_type, serving.accelerator_type, serving.accelerator_count)
    machine_fields = {"machine_type", "accelerator", "accelerator_count", "placements"}
    if asked & machine_fields and running not in [
        _machine(t["machine_type"], t["accelerator"], t["accelerator_count"]) for t in tried
    ]:
        problems.append(
            f"it runs on {placements.describe(running)}; this deploy asks for "
            + " or ".join(placements.describe(t) for t in tried)
        )
    if asked & {"min_replicas", "max_replicas"}:
        wanted = (command.min_replicas, command.max_replicas or command.min_replicas)
        # Under scale-to-zero Vertex holds minReplicaCount 0 and min_replicas is the count it wakes
        # to (not reported back): only the maximum can be compared (docs/vertex-fidelity.md, 58).
        low = wanted[0] if serving.scales_to_zero else serving.min_replicas
        if wanted != (low, serving.max_replicas):
            problems.append(
                f"it runs {serving.min_replicas}-{serving.max_replicas} replicas; this deploy asks "
                f"for {wanted[0]}-{wanted[1]} (`scale` changes them in place)"
            )
    if command.serving_args is not None:
        remembered = ctx.state.serving_args(endpoint_id, serving.id)
        current = remembered.args if remembered is not None else []
        if current != command.serving_args:
            problems.append(
                f"it runs with serving args {current or 'none'}; this deploy asks for "
                f"{command.serving_args} (a container takes its args when it starts)"
            )
    return problems


def _machine(machine_type: str | None, accelerator: str | None, count: int) -> dict[str, Any]:
    """A placement as compared: a CPU-only machine has no accelerator count to differ in."""
    return {
        "machine_type": machine_type,
        "accelerator": accelerator,
        "accelerator_count": count if accelerator else 1,
    }


def _spec(
    deploy: Deploy,
    found: ModelVersion,
    version: str,
    placement: dict[str, Any],
    deployed_model_id: str,
) -> DeploymentSpec:
    return DeploymentSpec(
        model=deploy.model,
        version=version,
        model_resource=found.resource,
        model_version_id=found.version_id,
        deployed_model_id=deployed_model_id,
        machine_type=placement["machine_type"],
        accelerator_type=placement["accelerator"],
        accelerator_count=placement["accelerator_count"],
        min_replicas=deploy.min_replicas,
        max_replicas=deploy.max_replicas or deploy.min_replicas,
        traffic_percent=deploy.traffic_percent,
    )


def start_deploys(
    ctx: Context,
    now: datetime,
    base: dict[str, Any],
    endpoint: Endpoint,
    specs: list[tuple[DeploymentSpec, list[dict[str, Any]]]],
    command: dict[str, Any],
    note: str = "",
) -> Result:
    """Deploy `specs` one at a time (a wake of several), each when the one before it is ready;
    each with the placements it may fall back on after a stockout."""
    records = [
        placing.first(
            OperationRecord(
                request_id=base["request_id"],
                action=base["action"],
                endpoint=endpoint.id,
                model=spec.model,
                version=spec.version,
                deployed_model_id=spec.deployed_model_id,
                started_at=now,
                details={"command": command},
            ),
            replace(spec, service_account=ctx.settings.serving_service_account),
            tried,
            note,
        )
        for spec, tried in specs
    ]
    name = steps.plan(ctx, now, records, endpoint)
    return Result(
        status=Status.ACCEPTED,
        message=f"deploying to {endpoint.id}; the sweep reports when it serves",
        operation=name,
        details={
            "operations": [name] if name else [],
            "steps": len(specs),
            "deployed_model_ids": [s.deployed_model_id for s, _ in specs],
        },
        **base,
    )


def wake(command: Wake, ctx: Context, now: datetime, base: dict[str, Any]) -> Result:
    teardown = ctx.state.teardown(command.endpoint)
    if teardown is None or not teardown.deployments:
        existing = ctx.vertex.endpoint(command.endpoint)
        if existing is not None and any(d.scales_to_zero for d in existing.deployments):
            return Result(
                status=Status.SUCCEEDED,
                message=f"{existing.id} scales to zero on Vertex, which wakes it: its next "
                "prediction starts a scale-up (Vertex answers 429 until a replica is up)",
                **base,
            )
        if existing is not None and existing.deployments:
            return Result(status=Status.SUCCEEDED, message=f"{existing.id} is awake", **base)
        raise PermanentError(f"nothing was torn down on {command.endpoint}: send a deploy command")
    specs = []
    serving_args: list[list[str] | None] = []
    endpoint_labels: dict[str, str] = {}
    for part, body in enumerate(teardown.deployments):
        deploy = _remembered(body, command.request_id)
        found = ctx.vertex.model_version(
            deploy.model, version_alias(deploy.version) if deploy.version else LATEST_ALIAS
        )
        if found is None:
            raise PermanentError(f"{deploy.model} version {deploy.version} is no longer registered")
        ttl = deploy.idle_ttl if deploy.idle_ttl is not None else ctx.settings.default_idle_ttl_s
        endpoint_labels = labels.endpoint_labels(deploy.model, ttl, deploy.keep_warm)
        serving_args.append(deploy.serving_args)
        # The teardown listed the placement that served first: a wake tries it first.
        tried = placements.resolve(deploy.placement_list())
        version = deploy.version or found.labels.get(labels.VERSION, "")
        dm_id = traffic.deployed_model_id(command.request_id, str(part))
        specs.append((_spec(deploy, found, version, tried[0], dm_id), tried))
    endpoint = managed_endpoint(ctx, command.endpoint, endpoint_labels)
    for (spec, _), args in zip(specs, serving_args, strict=True):
        remember_serving_args(ctx, endpoint.id, spec, args, command.request_id)
    result = start_deploys(
        ctx, now, base, endpoint, specs, {"action": "wake", "endpoint": command.endpoint}
    )
    ctx.state.forget_teardown(command.endpoint)
    return result


def remember_serving_args(
    ctx: Context, endpoint_id: str, spec: DeploymentSpec, args: list[str] | None, request_id: str
) -> None:
    """The deployment's own serving args, where its container finds them at start (before the
    deploy starts: Vertex keeps containerSpec on the Model, shared by every deployment of it)."""
    if args:
        record = ServingArgs(
            args=list(args), request_id=request_id, model=spec.model, version=spec.version
        )
        ctx.state.remember_serving_args(endpoint_id, spec.deployed_model_id, record)


def _remembered(body: dict[str, Any], request_id: str) -> Deploy:
    """A deploy the sweep remembered when it tore it down, parsed like any command."""
    try:
        return Deploy.model_validate({**body, "action": "deploy", "request_id": request_id})
    except ValidationError as error:
        raise PermanentError(f"the remembered deployment can't be redeployed: {error}") from error


def managed_endpoint(
    ctx: Context,
    endpoint_id: str,
    wanted: dict[str, str],
    keep: AbstractSet[str] = frozenset(),
    dedicated: bool = False,
) -> Endpoint:
    """The endpoint with `wanted` labels (created if absent, `dedicated` for scale-to-zero);
    labels in `keep` stay as they are."""
    endpoint = ctx.vertex.endpoint(endpoint_id)
    if endpoint is None:
        return ctx.vertex.create_endpoint(endpoint_id, wanted, dedicated=dedicated)
    if not labels.is_managed(endpoint.labels):
        raise PermanentError(
            f"endpoint {endpoint_id} exists and is not managed by modeldrop: pick another endpoint name"
        )
    wanted = {k: v for k, v in wanted.items() if k not in keep or k not in endpoint.labels}
    merged = {**endpoint.labels, **wanted}
    if merged != endpoint.labels:
        ctx.vertex.set_endpoint_labels(endpoint_id, merged)
    return endpoint
