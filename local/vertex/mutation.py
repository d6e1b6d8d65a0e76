"""MutateDeployedModel: replica counts changed through an operation that takes the modelled time."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from local.vertex import naming, operations, scale_to_zero, versions
from local.vertex.deployments import LaunchSpec
from local.vertex.endpoints import touch
from local.vertex.errors import invalid, not_found
from local.vertex.machines import check_resources
from local.vertex.resources import (
    DedicatedResources,
    DeployedModel,
    MutateDeployedModelRequest,
    Operation,
)

if TYPE_CHECKING:
    from local.vertex.rollout import Rollout

# MutateDeployedModelRequest.deployed_model: the only fields that can be mutated.
MUTABLE = {
    "dedicatedResources.minReplicaCount",
    "dedicatedResources.maxReplicaCount",
    "dedicatedResources.autoscalingMetricSpecs",
    "disableContainerLogging",
}


def start(self: Rollout, name: str, request: MutateDeployedModelRequest) -> Operation:
    """Validate the change at once; apply it when the (modelled) operation ends."""
    endpoint = self.endpoints.get(name)
    paths = naming.mask_paths(request.update_mask)
    if not paths:
        raise invalid("update_mask is required: name the fields to update.")
    unknown = [p for p in paths if p not in MUTABLE]
    if unknown:
        raise invalid(f"Fields {unknown} cannot be mutated; mutable: {sorted(MUTABLE)}.")
    change = request.deployed_model
    target = next((m for m in endpoint.deployed_models if m.id == change.id), None)
    if target is None or target.dedicated_resources is None:
        raise not_found("DeployedModel", f"{name}/deployedModels/{change.id}")
    new = change.dedicated_resources
    current = target.dedicated_resources.model_copy(deep=True)
    if new is not None:
        scale_to_zero.check_fields(new, versions.current.get())
        if "dedicatedResources.minReplicaCount" in paths:
            current.min_replica_count = new.min_replica_count
            if current.min_replica_count > 0:  # no longer scales to zero: its fields go (assumed)
                current.initial_replica_count = current.scale_to_zero_spec = None
        if "dedicatedResources.maxReplicaCount" in paths:
            current.max_replica_count = new.max_replica_count
    # The merged counts are checked in the request's version only when it changes the minimum
    # (a v1 mutate of max leaves a scale-to-zero model deployed through v1beta1 as it is).
    version = (
        versions.current.get()
        if "dedicatedResources.minReplicaCount" in paths
        else versions.V1BETA1
    )
    check_resources(
        DeployedModel(dedicated_resources=current), [], fidelity=self.fidelity, version=version
    )
    operation = operations.start(self.store, name, "MutateDeployedModelOperationMetadata")
    delay = self.fidelity.seconds("mutate")
    if delay <= 0:
        _apply(self, name, target, current, operation)
        return operation
    self.endpoints.claim(name, operation.name)
    self._spawn(_mutate(self, name, target, current, operation, delay), operation.name)
    return operation


async def _mutate(
    self: Rollout,
    name: str,
    target: DeployedModel,
    resources: DedicatedResources,
    operation: Operation,
    delay: float,
) -> None:
    try:
        await asyncio.sleep(delay)
    except asyncio.CancelledError:
        if operation.name not in self.background.cancelled:
            raise
        operations.fail(self.store, operation, operations.cancelled())
        return
    finally:
        self.endpoints.release(name, operation.name)
    _apply(self, name, target, resources, operation)


def _apply(
    self: Rollout,
    name: str,
    target: DeployedModel,
    resources: DedicatedResources,
    operation: Operation,
) -> None:
    target.dedicated_resources = resources
    endpoint = self.endpoints.get(name)
    touch(endpoint)
    self.store.save_endpoint(endpoint)
    model = self.registry.get(f"{target.model}@{target.model_version_id}")
    spec = LaunchSpec(name, target.id or "", model, resources.machine_spec)
    self.scaler.after_mutate(spec, resources)
    operations.succeed(
        self.store, operation, "MutateDeployedModelResponse", {"deployedModel": target.wire()}
    )
