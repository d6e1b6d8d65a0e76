"""After an emulator restart: fail cut-short operations, drop stale references, relaunch deployments."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from local.vertex import operations
from local.vertex.deployments import LaunchSpec
from local.vertex.errors import ApiError, as_api_error
from local.vertex.resources import DedicatedResources, DeployedModelRef

if TYPE_CHECKING:
    from local.vertex.rollout import Rollout

log = logging.getLogger(__name__)


def resume(self: Rollout) -> None:
    """After a restart: fail operations the restart cut short and relaunch every deployment."""
    orphans = self.deployments.reap_orphans()
    if orphans:
        log.warning("stopped %d deployment processes left by an earlier run", orphans)
    interrupted = ApiError("ABORTED", "The emulator restarted while this operation ran; retry it.")
    for operation in list(self.store.operations.values()):
        if not operation.done:
            operations.fail(self.store, operation, interrupted)
    for record in self.store.models.values():
        for version in record.versions:
            version.deployed_models = [r for r in version.deployed_models if _live(self, r)]
        self.store.save_model(record)
    for endpoint in self.store.endpoints.values():
        for deployed in endpoint.deployed_models:
            try:
                model = self.registry.get(f"{deployed.model}@{deployed.model_version_id}")
            except ApiError as error:
                log.warning("cannot relaunch %s: %s", deployed.id, error.message)
                continue
            resources = deployed.dedicated_resources
            machine = resources.machine_spec if resources else None
            spec = LaunchSpec(endpoint.name or "", deployed.id or "", model, machine)
            self._set_status(spec, 0, "Relaunching after an emulator restart.")
            self._spawn(_relaunch(self, spec, resources))


def _live(self: Rollout, ref: DeployedModelRef) -> bool:
    """Whether a model's reference names a deployed model its endpoint still has."""
    endpoint = self.store.endpoints.get(ref.endpoint)
    return endpoint is not None and any(
        m.id == ref.deployed_model_id for m in endpoint.deployed_models
    )


async def _relaunch(self: Rollout, spec: LaunchSpec, resources: DedicatedResources | None) -> None:
    try:
        await self.deployments.launch(spec)
    except Exception as error:
        message = as_api_error(error).message
        log.warning("relaunching %s failed: %s", spec.key, message)
        self._set_status(spec, 0, message)
        return
    self._set_status(spec, 1, "")
    if resources is not None:  # a scale-to-zero model's idle clock starts again
        self.scaler.watch(spec, resources)
