"""The Vertex AI adapter: the Model Registry and endpoints through aiplatform_v1 GAPIC over REST.

Only this module imports the Vertex clients; they are built on first use and cached for warm
starts (the high-level SDK is never imported: it costs seconds of cold start).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from modeldrop.errors import PermanentError
from modeldrop.google_errors import translate

if TYPE_CHECKING:
    from google.cloud.aiplatform_v1 import EndpointServiceClient, ModelServiceClient

UPLOAD_WAIT_S = 120.0
CREATE_ENDPOINT_WAIT_S = 120.0
PAGE_SIZE = 100


@dataclass(frozen=True)
class ModelSpec:
    """A model version to register: the serving container and where its weights are."""

    model: str  # the model id in the registry (= the models/<model>/ folder name)
    version: str  # the version folder
    aliases: tuple[
        str, ...
    ]  # version aliases (start with a letter); an alias moves to the new version
    description: str
    labels: dict[str, str]
    image: str
    args: list[str]
    env: dict[str, str]
    port: int
    predict_route: str
    health_route: str
    deployment_timeout_s: int
    startup_probe: dict[str, int]  # period_seconds, timeout_seconds, failure_threshold, ...
    health_probe: dict[str, int]
    shared_memory_size_mb: int


@dataclass(frozen=True)
class ModelVersion:
    resource: str  # projects/<p>/locations/<r>/models/<model>
    version_id: str
    aliases: tuple[str, ...]
    labels: dict[str, str]
    create_time: datetime | None = None


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment to start: which model version, on what hardware, with which share of traffic."""

    model: str
    version: str
    model_resource: str
    model_version_id: str
    deployed_model_id: str  # 1-10 digits, chosen by us so a retried deploy is recognisable
    machine_type: str
    accelerator_type: str | None
    accelerator_count: int
    min_replicas: int
    max_replicas: int
    traffic_percent: int
    service_account: str | None = None

    @property
    def display_name(self) -> str:
        return display_name(self.model, self.version)


@dataclass(frozen=True)
class Deployment:
    """A model deployed on an endpoint, as Vertex reports it."""

    id: str
    model: str | None  # our model name, from the display name; None if not ours
    version: str | None
    model_resource: str
    model_version_id: str
    create_time: datetime | None
    machine_type: str
    accelerator_type: str | None
    accelerator_count: int
    min_replicas: int
    max_replicas: int


@dataclass(frozen=True)
class Endpoint:
    id: str
    resource: str
    labels: dict[str, str]
    deployments: tuple[Deployment, ...]
    traffic_split: dict[str, int]
    create_time: datetime | None = None


@dataclass(frozen=True)
class Operation:
    name: str
    done: bool
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def display_name(model: str, version: str) -> str:
    return f"{model}:{version}"


class Vertex(Protocol):
    def model_version(self, model: str, alias: str) -> ModelVersion | None: ...

    def list_managed_versions(self, label_filter: str) -> list[ModelVersion]: ...

    def register(self, spec: ModelSpec) -> str:
        """Start the upload of a new version (under the model if it exists); the operation name."""
        ...

    def finish_register(self, operation: str) -> ModelVersion:
        """Wait (bounded) for a register operation; TransientError while it runs."""
        ...

    def endpoint(self, endpoint_id: str) -> Endpoint | None: ...

    def list_managed_endpoints(self, label_filter: str) -> list[Endpoint]: ...

    def create_endpoint(self, endpoint_id: str, labels: dict[str, str]) -> Endpoint: ...

    def set_endpoint_labels(self, endpoint_id: str, labels: dict[str, str]) -> None: ...

    def deploy(
        self, endpoint_id: str, spec: DeploymentSpec, traffic_split: dict[str, int]
    ) -> str: ...

    def undeploy(
        self, endpoint_id: str, deployed_model_id: str, traffic_split: dict[str, int]
    ) -> str: ...

    def set_traffic(self, endpoint_id: str, traffic_split: dict[str, int]) -> None: ...

    def scale(
        self, endpoint_id: str, deployed_model_id: str, min_replicas: int, max_replicas: int
    ) -> str: ...

    def delete_endpoint(self, endpoint_id: str) -> str: ...

    def operation(self, name: str) -> Operation: ...


@cache
def _clients(
    region: str, api_endpoint: str | None
) -> tuple[ModelServiceClient, EndpointServiceClient]:
    from google.api_core.client_options import ClientOptions
    from google.cloud.aiplatform_v1 import EndpointServiceClient, ModelServiceClient

    options = ClientOptions(
        api_endpoint=api_endpoint or f"https://{region}-aiplatform.googleapis.com"
    )
    credentials = None
    if api_endpoint and api_endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        # A local emulator needs no Google credentials.
        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return (
        ModelServiceClient(client_options=options, transport="rest", credentials=credentials),
        EndpointServiceClient(client_options=options, transport="rest", credentials=credentials),
    )


class GapicVertex:
    """Vertex over the aiplatform_v1 REST clients, in one project and region."""

    def __init__(self, project: str, region: str, api_endpoint: str | None = None) -> None:
        self._location = f"projects/{project}/locations/{region}"
        self._region = region
        self._api_endpoint = api_endpoint

    @property
    def _models(self) -> ModelServiceClient:
        return _clients(self._region, self._api_endpoint)[0]

    @property
    def _endpoints(self) -> EndpointServiceClient:
        return _clients(self._region, self._api_endpoint)[1]

    def _model_name(self, model: str) -> str:
        return f"{self._location}/models/{model}"

    def _endpoint_name(self, endpoint_id: str) -> str:
        return f"{self._location}/endpoints/{endpoint_id}"

    def model_version(self, model: str, alias: str) -> ModelVersion | None:
        from google.api_core.exceptions import NotFound

        try:
            found = self._models.get_model(name=f"{self._model_name(model)}@{alias}")
        except NotFound:
            return None
        except Exception as error:
            raise translate(error, f"reading model {model}@{alias}") from error
        return ModelVersion(
            self._model_name(model),
            str(found.version_id),
            tuple(found.version_aliases),
            dict(found.labels),
        )

    def list_managed_versions(self, label_filter: str) -> list[ModelVersion]:
        """Every version of every model matching `label_filter`, model by model."""
        try:
            versions = []
            models = self._models.list_models(
                request={"parent": self._location, "filter": label_filter, "page_size": PAGE_SIZE}
            )
            for model in models:
                for found in self._models.list_model_versions(request={"name": model.name}):
                    created = found.version_create_time
                    versions.append(
                        ModelVersion(
                            str(model.name),
                            str(found.version_id),
                            tuple(found.version_aliases),
                            dict(found.labels),
                            created
                            if isinstance(created, datetime) and created.year > 1970
                            else None,
                        )
                    )
            return versions
        except Exception as error:
            raise translate(error, "listing models") from error

    def register(self, spec: ModelSpec) -> str:
        from google.cloud import aiplatform_v1 as v1

        container = v1.ModelContainerSpec(
            image_uri=spec.image,
            args=spec.args,
            env=[v1.EnvVar(name=k, value=v) for k, v in spec.env.items()],
            ports=[v1.Port(container_port=spec.port)],
            predict_route=spec.predict_route,
            health_route=spec.health_route,
            deployment_timeout={"seconds": spec.deployment_timeout_s},
            shared_memory_size_mb=spec.shared_memory_size_mb,
            startup_probe=_probe(spec.health_route, spec.port, spec.startup_probe),
            health_probe=_probe(spec.health_route, spec.port, spec.health_probe),
        )
        model = v1.Model(
            display_name=spec.model,
            description=spec.description,
            labels=spec.labels,
            version_aliases=list(spec.aliases),
            version_description=f"models/{spec.model}/{spec.version}/",
            container_spec=container,
        )
        request = v1.UploadModelRequest(parent=self._location, model=model)
        if self._exists(spec.model):
            request.parent_model = self._model_name(spec.model)
        else:
            request.model_id = spec.model
        try:
            return str(self._models.upload_model(request=request).operation.name)
        except Exception as error:
            raise translate(error, f"registering {spec.model}/{spec.version}") from error

    def finish_register(self, operation: str) -> ModelVersion:
        from google.cloud import aiplatform_v1 as v1

        op = self.operation(operation)
        if not op.done:
            from modeldrop.errors import TransientError

            raise TransientError(f"registration {operation} is still running")
        if op.error:
            raise PermanentError(f"Vertex refused the model: {op.error}")
        response = v1.UploadModelResponse(op.details.get("response", {}))
        model = self._models.get_model(name=f"{response.model}@{response.model_version_id}")
        return ModelVersion(
            str(response.model).split("@")[0],
            str(response.model_version_id),
            tuple(model.version_aliases),
            dict(model.labels),
        )

    def _exists(self, model: str) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            self._models.get_model(name=self._model_name(model))
        except NotFound:
            return False
        except Exception as error:
            raise translate(error, f"reading model {model}") from error
        return True

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

    def operation(self, name: str) -> Operation:
        from google.api_core.exceptions import NotFound

        try:
            op = self._endpoints.get_operation(request={"name": name})
        except NotFound:
            # Operations expire on Vertex's side: an unknown one has ended, and how is lost.
            return Operation(name=name, done=True, error=f"Vertex no longer knows operation {name}")
        except Exception as error:
            raise translate(error, f"reading operation {name}") from error
        error_text = f"{op.error.message} (code {op.error.code})" if op.HasField("error") else None
        details: dict[str, Any] = {}
        if op.HasField("response"):
            details["response"] = _any_fields(op.response)
        return Operation(name=op.name, done=bool(op.done), error=error_text, details=details)


def _probe(path: str, port: int, settings: dict[str, int]) -> Any:
    from google.cloud import aiplatform_v1 as v1

    return v1.Probe(http_get=v1.Probe.HttpGetAction(path=path, port=port), **settings)


def _any_fields(message: Any) -> dict[str, Any]:
    """The fields of a packed response (its type may be unknown to the local descriptor pool)."""
    from google.cloud import aiplatform_v1 as v1

    kind = message.type_url.rsplit(".", 1)[-1]
    known: dict[str, Any] = {
        "UploadModelResponse": v1.UploadModelResponse,
        "DeployModelResponse": v1.DeployModelResponse,
    }
    if kind not in known:
        return {}
    parsed = known[kind].deserialize(message.value)
    return dict(type(parsed).to_dict(parsed, preserving_proto_field_name=True))


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
                create_time=_time(deployed.create_time),
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
        create_time=_time(found.create_time),
    )


def _accelerator(machine: Any) -> str | None:
    name = getattr(machine.accelerator_type, "name", str(machine.accelerator_type))
    return None if name in ("", "ACCELERATOR_TYPE_UNSPECIFIED", "0") else str(name)


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.year > 1970 else None
    return None
