"""The Vertex AI adapter: endpoints, deployments and traffic through aiplatform_v1 GAPIC over REST,
on top of the Model Registry half (vertex_models.py). `GapicVertex` is the one `Vertex` port
implementation (resources.py holds the port and the values it returns).
"""

from __future__ import annotations

from typing import Any

from modeldrop.google_errors import translate
from modeldrop.resources import Deployment, DeploymentSpec, Endpoint
from modeldrop.vertex_client import PAGE_SIZE, time_or_none
from modeldrop.vertex_models import Registry

CREATE_ENDPOINT_WAIT_S = 120.0


class GapicVertex(Registry):
    """Vertex over the aiplatform_v1 REST clients, in one project and region."""

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        from google.api_core.exceptions import NotFound

        try:
            return _endpoint(self._endpoints.get_endpoint(name=self._endpoint_name(endpoint_id)))
        except NotFound:
            return None
        except Exception as error:
            raise translate(error, f"reading endpoint {endpoint_id}") from error

    def list_managed_endpoints(self, label_filter: str) -> list[Endpoint]:
        try:
            pages = self._endpoints.list_endpoints(
                request={"parent": self._location, "filter": label_filter, "page_size": PAGE_SIZE}
            )
            return [_endpoint(found) for found in pages]
        except Exception as error:
            raise translate(error, "listing endpoints") from error

    def create_endpoint(self, endpoint_id: str, labels: dict[str, str]) -> Endpoint:
        from google.api_core.exceptions import AlreadyExists
        from google.cloud import aiplatform_v1 as v1

        try:
            # endpoint_id makes a duplicate command find the endpoint instead of making a second one.
            self._endpoints.create_endpoint(
                parent=self._location,
                endpoint=v1.Endpoint(display_name=endpoint_id, labels=labels),
                endpoint_id=endpoint_id,
            ).result(timeout=CREATE_ENDPOINT_WAIT_S)  # type: ignore[no-untyped-call]
        except AlreadyExists:
            pass
        except Exception as error:
            raise translate(error, f"creating endpoint {endpoint_id}") from error
        found = self.endpoint(endpoint_id)
        if found is None:
            raise translate(
                TimeoutError("not visible after creation"), f"creating endpoint {endpoint_id}"
            )
        return found

    def set_endpoint_labels(self, endpoint_id: str, labels: dict[str, str]) -> None:
        from google.cloud import aiplatform_v1 as v1

        endpoint = v1.Endpoint(name=self._endpoint_name(endpoint_id), labels=labels)
        try:
            self._endpoints.update_endpoint(endpoint=endpoint, update_mask={"paths": ["labels"]})
        except Exception as error:
            raise translate(error, f"labelling endpoint {endpoint_id}") from error

    def deploy(self, endpoint_id: str, spec: DeploymentSpec, traffic_split: dict[str, int]) -> str:
        from google.cloud import aiplatform_v1 as v1

        machine = v1.MachineSpec(machine_type=spec.machine_type)
        if spec.accelerator_type:
            machine.accelerator_type = spec.accelerator_type  # type: ignore[assignment]
            machine.accelerator_count = spec.accelerator_count
        deployed = v1.DeployedModel(
            id=spec.deployed_model_id,
            model=f"{spec.model_resource}@{spec.model_version_id}",
            display_name=spec.display_name,
            dedicated_resources=v1.DedicatedResources(
                machine_spec=machine,
                min_replica_count=spec.min_replicas,
                max_replica_count=spec.max_replicas,
            ),
        )
        if spec.service_account:
            deployed.service_account = spec.service_account
        try:
            op = self._endpoints.deploy_model(
                endpoint=self._endpoint_name(endpoint_id),
                deployed_model=deployed,
                traffic_split=traffic_split,
            )
        except Exception as error:
            raise translate(error, f"deploying {spec.display_name} to {endpoint_id}") from error
        return str(op.operation.name)

    def undeploy(
        self, endpoint_id: str, deployed_model_id: str, traffic_split: dict[str, int]
    ) -> str:
        try:
            op = self._endpoints.undeploy_model(
                endpoint=self._endpoint_name(endpoint_id),
                deployed_model_id=deployed_model_id,
                traffic_split=traffic_split,
            )
        except Exception as error:
            raise translate(error, f"undeploying {deployed_model_id} from {endpoint_id}") from error
        return str(op.operation.name)

    def set_traffic(self, endpoint_id: str, traffic_split: dict[str, int]) -> None:
        from google.cloud import aiplatform_v1 as v1

        endpoint = v1.Endpoint(name=self._endpoint_name(endpoint_id), traffic_split=traffic_split)
        try:
            self._endpoints.update_endpoint(
                endpoint=endpoint, update_mask={"paths": ["traffic_split"]}
            )
        except Exception as error:
            raise translate(error, f"splitting traffic on {endpoint_id}") from error

    def scale(
        self, endpoint_id: str, deployed_model_id: str, min_replicas: int, max_replicas: int
    ) -> str:
        from google.cloud import aiplatform_v1 as v1

        deployed = v1.DeployedModel(
            id=deployed_model_id,
            dedicated_resources=v1.DedicatedResources(
                min_replica_count=min_replicas, max_replica_count=max_replicas
            ),
        )
        paths = ["dedicated_resources.min_replica_count", "dedicated_resources.max_replica_count"]
        try:
            op = self._endpoints.mutate_deployed_model(
                endpoint=self._endpoint_name(endpoint_id),
                deployed_model=deployed,
                update_mask={"paths": paths},
            )
        except Exception as error:
            raise translate(error, f"scaling {deployed_model_id} on {endpoint_id}") from error
        return str(op.operation.name)

    def delete_endpoint(self, endpoint_id: str) -> str:
        try:
            return str(
                self._endpoints.delete_endpoint(
                    name=self._endpoint_name(endpoint_id)
                ).operation.name
            )
        except Exception as error:
            raise translate(error, f"deleting endpoint {endpoint_id}") from error


def _endpoint(found: Any) -> Endpoint:
    deployments = []
    for deployed in found.deployed_models:
        model, _, version = str(deployed.display_name).partition(":")
        resources = deployed.dedicated_resources
        machine = resources.machine_spec
        deployments.append(
            Deployment(
                id=str(deployed.id),
                model=model if version else None,
                version=version or None,
                model_resource=str(deployed.model).split("@")[0],
                model_version_id=str(deployed.model_version_id),
                create_time=time_or_none(deployed.create_time),
                machine_type=str(machine.machine_type),
                accelerator_type=_accelerator(machine),
                accelerator_count=int(machine.accelerator_count),
                min_replicas=int(resources.min_replica_count),
                max_replicas=int(resources.max_replica_count),
            )
        )
    return Endpoint(
        id=str(found.name).rsplit("/", 1)[-1],
        resource=str(found.name),
        labels=dict(found.labels),
        deployments=tuple(deployments),
        traffic_split={str(k): int(v) for k, v in found.traffic_split.items()},
        create_time=time_or_none(found.create_time),
    )


def _accelerator(machine: Any) -> str | None:
    name = getattr(machine.accelerator_type, "name", str(machine.accelerator_type))
    return None if name in ("", "ACCELERATOR_TYPE_UNSPECIFIED", "0") else str(name)
