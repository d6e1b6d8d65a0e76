"""The Vertex AI adapter: endpoints, deployments and traffic through aiplatform_v1 GAPIC over REST,
on top of the Model Registry half (vertex_models.py). `GapicVertex` is the one `Vertex` port
implementation (resources.py holds the port and the values it returns).
"""

from __future__ import annotations

from typing import Any

from modeldrop import placements
from modeldrop.errors import QuotaError, StockoutError
from modeldrop.google_errors import translate
from modeldrop.placements import Refusal
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

    def create_endpoint(
        self, endpoint_id: str, labels: dict[str, str], dedicated: bool = False
    ) -> Endpoint:
        from google.api_core.exceptions import AlreadyExists
        from google.cloud import aiplatform_v1 as v1

        endpoint = v1.Endpoint(display_name=endpoint_id, labels=labels)
        if dedicated:  # scale-to-zero needs a dedicated endpoint (docs/vertex-fidelity.md row 66)
            endpoint.dedicated_endpoint_enabled = True
        try:
            # endpoint_id makes a duplicate command find the endpoint instead of making a second one.
            self._endpoints.create_endpoint(
                parent=self._location,
                endpoint=endpoint,
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
        # Scale-to-zero exists only in v1beta1 (v1 refuses minReplicaCount 0 and its fields).
        from google.cloud import aiplatform_v1 as v1
        from google.cloud import aiplatform_v1beta1 as v1beta1

        beta = spec.scale_to_zero_s is not None
        types: Any = v1beta1 if beta else v1
        machine = types.MachineSpec(machine_type=spec.machine_type)
        if spec.accelerator_type:
            machine.accelerator_type = spec.accelerator_type
            machine.accelerator_count = spec.accelerator_count
        resources = types.DedicatedResources(
            machine_spec=machine,
            min_replica_count=spec.min_replicas,
            max_replica_count=spec.max_replicas,
        )
        if beta:
            from google.protobuf import duration_pb2

            period = duration_pb2.Duration(seconds=spec.scale_to_zero_s)
            resources.min_replica_count = 0
            resources.initial_replica_count = spec.min_replicas
            resources.scale_to_zero_spec = v1beta1.DedicatedResources.ScaleToZeroSpec(
                min_scaleup_period=period, idle_scaledown_period=period
            )
        deployed = types.DeployedModel(
            id=spec.deployed_model_id,
            model=f"{spec.model_resource}@{spec.model_version_id}",
            display_name=spec.display_name,
            dedicated_resources=resources,
        )
        if spec.service_account:
            deployed.service_account = spec.service_account
        client: Any = self._beta_endpoints if beta else self._endpoints
        doing = f"deploying {spec.display_name} to {endpoint_id}"
        try:
            op = client.deploy_model(
                endpoint=self._endpoint_name(endpoint_id),
                deployed_model=deployed,
                traffic_split=traffic_split,
            )
        except Exception as error:
            raise _refused(error, doing) from error
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
                available_replicas=int(deployed.status.available_replica_count)
                if "status" in deployed
                else None,
                status_message=str(deployed.status.message) if "status" in deployed else "",
                status_time=time_or_none(deployed.status.last_update_time)
                if "status" in deployed
                else None,
            )
        )
    return Endpoint(
        id=str(found.name).rsplit("/", 1)[-1],
        resource=str(found.name),
        labels=dict(found.labels),
        deployments=tuple(deployments),
        traffic_split={str(k): int(v) for k, v in found.traffic_split.items()},
        create_time=time_or_none(found.create_time),
        dedicated=bool(found.dedicated_endpoint_enabled),
        dedicated_dns=_host(str(found.dedicated_endpoint_dns)),
    )


def _host(dns: str) -> str:
    """The host of Endpoint.dedicated_endpoint_dns. The proto's comment gives its format as
    `https://{endpoint_id}.{region}-{uid}.prediction.vertexai.goog`, while the SDK builds
    `https://{dedicated_endpoint_dns}/v1/...` from it (a bare host): either reads as the host."""
    return dns.removeprefix("https://").strip("/")


def _refused(error: Exception, doing: str) -> Exception:
    """A deploy refused at the request: quota and stockout named as such, the rest translated."""
    from google.api_core import exceptions as gexc

    if isinstance(error, gexc.GoogleAPICallError):
        text = f"{doing}: {error.message or error}"
        kind = placements.refusal(str(error.message or error))
        if kind is Refusal.QUOTA:
            return QuotaError(f"{text} (quota: ask for more, or free GPUs of this type)")
        if kind is Refusal.STOCKOUT:
            return StockoutError(text)
    return translate(error, doing)


def _accelerator(machine: Any) -> str | None:
    name = getattr(machine.accelerator_type, "name", str(machine.accelerator_type))
    return None if name in ("", "ACCELERATOR_TYPE_UNSPECIFIED", "0") else str(name)
