"""Deploy, undeploy and mutate deployed models: validated at once, carried out as operations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from local.vertex import mutation, naming, operations, quota, restart, scale_to_zero, traffic
from local.vertex.background import Background
from local.vertex.deployments import Deployment, Deployments, LaunchSpec, State, deadline_s
from local.vertex.endpoints import Endpoints, touch
from local.vertex.errors import ApiError, as_api_error, not_found, precondition
from local.vertex.faults import Faults
from local.vertex.machines import check_resources
from local.vertex.registry import Registry
from local.vertex.resources import (
    DeployedModel,
    DeployedModelRef,
    DeployedModelStatus,
    DeployModelRequest,
    MutateDeployedModelRequest,
    Operation,
    UndeployModelRequest,
)
from local.vertex.scaler import Scaler

log = logging.getLogger(__name__)


class Rollout:
    """Carries deploys and undeploys through their operations, and keeps processes in step."""

    def __init__(
        self, endpoints: Endpoints, registry: Registry, deployments: Deployments, faults: Faults
    ) -> None:
        self.endpoints = endpoints
        self.registry = registry
        self.deployments = deployments
        self.faults = faults
        self.store = endpoints.store
        self.fidelity = endpoints.fidelity
        self.background: Background = endpoints.background
        # Deployed models whose undeploy operation runs (faithful: still listed meanwhile).
        self.undeploying: set[str] = set()
        self.scaler = Scaler(self)

    def _spawn(self, work: Coroutine[Any, Any, None], operation: str | None = None) -> None:
        self.background.spawn(work, operation)

    def deploy(self, name: str, request: DeployModelRequest) -> Operation:
        endpoint = self.endpoints.get(name)
        deployed = request.deployed_model
        model = self.registry.get(
            f"{deployed.model}@{deployed.model_version_id}"
            if deployed.model_version_id and "@" not in deployed.model
            else deployed.model
        )
        self.registry.check_not_deleting(model)
        strict = self.fidelity.strict_requests
        machine = check_resources(
            deployed, model.supported_deployment_resources_types, strict, self.fidelity
        )
        if deployed.display_name:
            naming.check_display_name(deployed.display_name, "deployed_model", strict)
        self.deployments.check_image(model)
        deadline_s(model, self.deployments.settings.deploy_timeout_s)
        existing = [m.id or "" for m in endpoint.deployed_models]
        taken = {*existing, *self.endpoints.pending.get(name, set())}
        if deployed.dedicated_resources is not None:
            scale_to_zero.check_endpoint(
                endpoint, sorted(taken), deployed.dedicated_resources, self.fidelity
            )
        if deployed.id:
            naming.check_deployed_model_id(deployed.id)
            if deployed.id in taken:
                raise ApiError(
                    self.fidelity.same_deployed_id,
                    f"Deployed model {deployed.id} already exists on {name}.",
                )
        else:
            deployed.id = self.store.new_id()
        traffic.check_deploy(request.traffic_split, existing)
        quota.check(self.fidelity.quota_gpus, machine, deployed, self.store.endpoints.values())
        refused = self.faults.stockout(machine.accelerator_type, name.split("/")[3])
        if refused is not None and self.fidelity.stockout_at == "request":
            raise refused
        deployed.model = model.name or ""
        deployed.model_version_id = model.version_id
        deployed.display_name = deployed.display_name or model.display_name
        operation = operations.start(self.store, name, "DeployModelOperationMetadata")
        self.endpoints.claim(name, operation.name)
        self.endpoints.pending.setdefault(name, set()).add(deployed.id)
        model.deployed_models.append(DeployedModelRef(endpoint=name, deployed_model_id=deployed.id))
        self.store.save_model(self.registry.record(model.name or ""))
        operations.stage(self.store, operation, "STARTING_DEPLOYMENT")
        spec = LaunchSpec(name, deployed.id, model, machine)
        if self.fidelity.deploying_listed:
            deployed.status = DeployedModelStatus(
                message="Deploying.", available_replica_count=0, last_update_time=operations.now()
            )
            endpoint.deployed_models.append(deployed)
            touch(endpoint)
            self.store.save_endpoint(endpoint)
        work = self._deploy(operation, spec, deployed, dict(request.traffic_split))
        self._spawn(work, operation.name)
        return operation

    async def _deploy(
        self, operation: Operation, spec: LaunchSpec, deployed: DeployedModel, split: dict[str, int]
    ) -> None:
        name, dm_id = spec.endpoint, spec.deployed_model_id
        gpu = bool(spec.machine_spec and spec.machine_spec.accelerator_type)
        total = self.fidelity.seconds("deploy_gpu" if gpu else "deploy_cpu")
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            # Node provisioning takes the first 40% of a modelled deploy; a stockout shows then.
            operations.stage(self.store, operation, "ADDING_NODES_TO_CLUSTER")
            await asyncio.sleep(self.faults.config.deploy_delay_s + 0.4 * total)
            accelerator = spec.machine_spec.accelerator_type if spec.machine_spec else None
            refused = self.faults.stockout(accelerator, name.split("/")[3])
            if refused is not None and self.fidelity.stockout_at == "operation":
                raise refused
            operations.stage(self.store, operation, "STARTING_MODEL_SERVER")
            await self.deployments.launch(spec)
            operations.stage(self.store, operation, "FINISHING_UP")
            await asyncio.sleep(max(0.0, total - (loop.time() - started)))
            endpoint = self.endpoints.get(name)
            existing = [m.id or "" for m in endpoint.deployed_models if m.id != dm_id]
            endpoint.traffic_split = traffic.after_deploy(
                endpoint.traffic_split, split, dm_id, existing
            )
        except (Exception, asyncio.CancelledError) as error:
            cancelled = isinstance(error, asyncio.CancelledError)
            if cancelled and operation.name not in self.background.cancelled:
                raise  # shutting down: the restart fails this operation
            if not cancelled and not isinstance(error, ApiError):
                log.exception("deploying %s failed unexpectedly", spec.key)
            await self.deployments.stop(spec.key)
            self._forget(spec)
            self._unlist(name, dm_id)
            self._end_stage(operation, "FAILED_TO_DEPLOY")
            failure = operations.cancelled() if cancelled else _as_api_error(error)
            operations.fail(self.store, operation, failure)
            return
        finally:
            self.endpoints.pending.get(name, set()).discard(dm_id)
            self.endpoints.release(name, operation.name)
        stamp = operations.now()
        deployed.create_time = stamp
        deployed.status = DeployedModelStatus(available_replica_count=1, last_update_time=stamp)
        if deployed not in endpoint.deployed_models:
            endpoint.deployed_models.append(deployed)
        touch(endpoint)
        self.store.save_endpoint(endpoint)
        if deployed.dedicated_resources is not None:
            self.scaler.watch(spec, deployed.dedicated_resources)
        self._end_stage(operation, "SUCCESSFULLY_DEPLOYED")
        operations.succeed(
            self.store, operation, "DeployModelResponse", {"deployedModel": deployed.wire()}
        )

    def _end_stage(self, operation: Operation, stage: str) -> None:
        """Faithful: the final DeploymentStage (SUCCESSFULLY_DEPLOYED / FAILED_TO_DEPLOY)."""
        if self.fidelity.preset == "faithful":
            operations.stage(self.store, operation, stage)

    def _unlist(self, name: str, deployed_model_id: str) -> None:
        """Remove a deployed model that failed to deploy from the endpoint (when it was listed)."""
        endpoint = self.store.endpoints.get(name)
        if endpoint is None or not any(m.id == deployed_model_id for m in endpoint.deployed_models):
            return
        endpoint.deployed_models = [
            m for m in endpoint.deployed_models if m.id != deployed_model_id
        ]
        touch(endpoint)
        self.store.save_endpoint(endpoint)

    def _forget(self, spec: LaunchSpec) -> None:
        """Drop the model's reference to a deployment that is gone (or never came)."""
        try:
            record = self.registry.record(spec.model.name or "")
        except ApiError:
            return
        for version in record.versions:
            version.deployed_models = [
                r
                for r in version.deployed_models
                if (r.endpoint, r.deployed_model_id) != (spec.endpoint, spec.deployed_model_id)
            ]
        self.store.save_model(record)

    def undeploy(self, name: str, request: UndeployModelRequest) -> Operation:
        endpoint = self.endpoints.get(name)
        target = next(
            (m for m in endpoint.deployed_models if m.id == request.deployed_model_id), None
        )
        key = f"{name}/deployedModels/{request.deployed_model_id}"
        if target is None or (target.id in self.endpoints.pending.get(name, set())):
            raise not_found("DeployedModel", key)
        if key in self.undeploying:
            raise precondition(f"Deployed model {target.id} is already being undeployed.")
        remaining = [m for m in endpoint.deployed_models if m is not target]
        remaining_ids = [m.id or "" for m in remaining]
        split = traffic.after_undeploy(
            endpoint.traffic_split, request.traffic_split, target.id or "", remaining_ids
        )
        operation = operations.start(self.store, name, "UndeployModelOperationMetadata")
        self.endpoints.claim(name, operation.name)
        if not self.fidelity.inflight_undeploy:
            endpoint.traffic_split = split
            endpoint.deployed_models = remaining
            touch(endpoint)
            self.store.save_endpoint(endpoint)
        self.undeploying.add(key)
        model = self.registry.get(f"{target.model}@{target.model_version_id}")
        spec = LaunchSpec(name, target.id or "", model, None)
        self._spawn(self._undeploy(operation, spec, dict(request.traffic_split)), operation.name)
        return operation

    async def _undeploy(
        self, operation: Operation, spec: LaunchSpec, requested: dict[str, int]
    ) -> None:
        name = spec.endpoint
        try:
            await asyncio.sleep(self.fidelity.seconds("undeploy"))
            if self.fidelity.inflight_undeploy:
                # Listed with its traffic until now: the split changes as the operation ends.
                endpoint = self.endpoints.get(name)
                remaining = [m for m in endpoint.deployed_models if m.id != spec.deployed_model_id]
                endpoint.traffic_split = traffic.after_undeploy(
                    endpoint.traffic_split,
                    requested,
                    spec.deployed_model_id,
                    [m.id or "" for m in remaining],
                )
                endpoint.deployed_models = remaining
                touch(endpoint)
                self.store.save_endpoint(endpoint)
            self.scaler.forget(spec.key)
            await self.deployments.stop(spec.key)
        except (Exception, asyncio.CancelledError) as error:
            cancelled = isinstance(error, asyncio.CancelledError)
            if cancelled and operation.name not in self.background.cancelled:
                raise
            if not cancelled and not isinstance(error, ApiError):
                log.exception("undeploying %s failed", spec.key)
            if not self.fidelity.inflight_undeploy:
                self._forget(spec)
            failure = operations.cancelled() if cancelled else _as_api_error(error)
            operations.fail(self.store, operation, failure)
            return
        finally:
            self.undeploying.discard(spec.key)
            self.endpoints.release(name, operation.name)
        self._forget(spec)
        operations.succeed(self.store, operation, "UndeployModelResponse", {})

    def mutate(self, name: str, request: MutateDeployedModelRequest) -> Operation:
        return mutation.start(self, name, request)

    async def on_death(self, deployment: Deployment) -> None:
        """Record on the deployed model that its process died: no replica is available."""
        self._set_status(deployment.spec, 0, deployment.message)

    def _set_status(self, spec: LaunchSpec, available: int, message: str) -> None:
        endpoint = self.store.endpoints.get(spec.endpoint)
        if endpoint is None:
            return
        for deployed in endpoint.deployed_models:
            if deployed.id == spec.deployed_model_id:
                deployed.status = DeployedModelStatus(
                    message=message,
                    available_replica_count=available,
                    last_update_time=operations.now(),
                )
        self.store.save_endpoint(endpoint)

    def resume(self) -> None:
        """After a restart: fail operations the restart cut short and relaunch every deployment."""
        restart.resume(self)

    async def close(self) -> None:
        await self.background.close()
        await self.deployments.stop_all()

    def ready(self, endpoint: str, deployed_model_id: str) -> Deployment:
        """The running deployment to send a request to, or UNAVAILABLE."""
        deployment = self.deployments.running.get(f"{endpoint}/deployedModels/{deployed_model_id}")
        if deployment is None:
            raise ApiError("UNAVAILABLE", f"Deployed model {deployed_model_id} is not running.")
        if deployment.state is not State.READY:
            reason = deployment.message or f"it is {deployment.state.value}"
            raise ApiError(
                "UNAVAILABLE", f"Deployed model {deployed_model_id} cannot serve: {reason}"
            )
        return deployment


_as_api_error = as_api_error
