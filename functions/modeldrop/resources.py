"""What the control plane knows of Vertex AI: its resources as plain values, and the port (`Vertex`)
through which the adapter (vertex.py) reaches them.

Decisions (reconcile, steps, queue rules) use these types and never the Google clients: the import
contracts in pyproject.toml keep it so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


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
    # idle_policy scale-to-zero: Vertex's idle scale-down period (already within 5 min-8 h); the
    # deploy goes through v1beta1 with minReplicaCount 0 and min_replicas as initialReplicaCount.
    scale_to_zero_s: int | None = None

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
    available_replicas: int | None = None  # DeployedModel.status; None when Vertex says nothing
    status_message: str = ""
    status_time: datetime | None = None  # DeployedModel.status.last_update_time

    @property
    def scales_to_zero(self) -> bool:
        """Vertex scales it to zero itself (v1beta1 minReplicaCount 0): the sweep leaves it be."""
        return self.min_replicas == 0


@dataclass(frozen=True)
class Endpoint:
    id: str
    resource: str
    labels: dict[str, str]
    deployments: tuple[Deployment, ...]
    traffic_split: dict[str, int]
    create_time: datetime | None = None
    dedicated: bool = False  # Endpoint.dedicated_endpoint_enabled
    # Endpoint.dedicated_endpoint_dns: the host a dedicated endpoint's predictions must go to
    # (Vertex refuses them on the shared host); "" until Vertex publishes it.
    dedicated_dns: str = ""


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

    def create_endpoint(
        self, endpoint_id: str, labels: dict[str, str], dedicated: bool = False
    ) -> Endpoint: ...

    def set_endpoint_labels(self, endpoint_id: str, labels: dict[str, str]) -> None: ...

    def deploy(self, endpoint_id: str, spec: DeploymentSpec, traffic_split: dict[str, int]) -> str:
        """Start the deploy; QuotaError or StockoutError when Vertex refuses it for either."""
        ...

    def undeploy(
        self, endpoint_id: str, deployed_model_id: str, traffic_split: dict[str, int]
    ) -> str: ...

    def set_traffic(self, endpoint_id: str, traffic_split: dict[str, int]) -> None: ...

    def scale(
        self, endpoint_id: str, deployed_model_id: str, min_replicas: int, max_replicas: int
    ) -> str: ...

    def delete_endpoint(self, endpoint_id: str) -> str: ...

    def operation(self, name: str) -> Operation: ...
