"""Vertex AI v1 resources as pydantic models: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

# google.cloud.aiplatform.v1.AcceleratorType: REST clients send numbers, people send names.
ACCELERATOR_TYPES: dict[int, str] = {
    0: "ACCELERATOR_TYPE_UNSPECIFIED",
    1: "NVIDIA_TESLA_K80",
    2: "NVIDIA_TESLA_P100",
    3: "NVIDIA_TESLA_V100",
    4: "NVIDIA_TESLA_P4",
    5: "NVIDIA_TESLA_T4",
    6: "TPU_V2",
    7: "TPU_V3",
    8: "NVIDIA_TESLA_A100",
    9: "NVIDIA_A100_80GB",
    10: "TPU_V4_POD",
    11: "NVIDIA_L4",
    12: "TPU_V5_LITEPOD",
    13: "NVIDIA_H100_80GB",
    14: "NVIDIA_H100_MEGA_80GB",
    15: "NVIDIA_H200_141GB",
    16: "NVIDIA_B200",
    17: "NVIDIA_GB200",
    18: "NVIDIA_RTX_PRO_6000",
}
DEPLOYMENT_RESOURCES_TYPES: dict[int, str] = {
    0: "DEPLOYMENT_RESOURCES_TYPE_UNSPECIFIED",
    1: "DEDICATED_RESOURCES",
    2: "AUTOMATIC_RESOURCES",
    3: "SHARED_RESOURCES",
}


def enum_name(value: Any, table: dict[int, str], field: str) -> str:
    """An enum given as its number or its name, as its name; unknown values are refused."""
    if isinstance(value, int) and value in table:
        return table[value]
    if isinstance(value, str) and value in table.values():
        return value
    raise ValueError(f"Invalid value for {field}: {value!r}")


class Wire(BaseModel):
    """JSON as Vertex writes it; unmodelled fields are kept and echoed back."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class EnvVar(Wire):
    name: str
    value: str = ""


class Port(Wire):
    container_port: int = 8080


class ContainerSpec(Wire):
    image_uri: str
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    ports: list[Port] = Field(default_factory=list)
    predict_route: str | None = None
    health_route: str | None = None
    deployment_timeout: str | None = None  # a Duration, e.g. "1800s"


class DeployedModelRef(Wire):
    endpoint: str
    deployed_model_id: str


class Model(Wire):
    """One version of a model; every version shares the model's name."""

    name: str | None = None
    display_name: str = ""
    description: str | None = None
    version_id: str | None = None
    version_aliases: list[str] = Field(default_factory=list)
    version_description: str | None = None
    version_create_time: str | None = None
    version_update_time: str | None = None
    container_spec: ContainerSpec | None = None
    artifact_uri: str | None = None
    supported_deployment_resources_types: list[str] = Field(default_factory=list)
    deployed_models: list[DeployedModelRef] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    etag: str | None = None
    create_time: str | None = None
    update_time: str | None = None

    @field_validator("supported_deployment_resources_types", mode="before")
    @classmethod
    def _types(cls, value: Any) -> list[str]:
        return [
            enum_name(v, DEPLOYMENT_RESOURCES_TYPES, "supportedDeploymentResourcesTypes")
            for v in value or []
        ]


class MachineSpec(Wire):
    machine_type: str = ""
    accelerator_type: str | None = None
    accelerator_count: int = 0

    @field_validator("accelerator_type", mode="before")
    @classmethod
    def _accelerator(cls, value: Any) -> str | None:
        if value is None:
            return None
        name = enum_name(value, ACCELERATOR_TYPES, "machineSpec.acceleratorType")
        return None if name == "ACCELERATOR_TYPE_UNSPECIFIED" else name


class ScaleToZeroSpec(Wire):
    """v1beta1 DedicatedResources.ScaleToZeroSpec: Durations such as "300s"."""

    min_scaleup_period: str | None = None
    idle_scaledown_period: str | None = None


class DedicatedResources(Wire):
    machine_spec: MachineSpec | None = None
    min_replica_count: int = 0
    max_replica_count: int = 0
    # v1beta1 only (scale-to-zero): refused on /v1 as fields v1 does not have.
    initial_replica_count: int | None = None
    scale_to_zero_spec: ScaleToZeroSpec | None = None

    @property
    def scales_to_zero(self) -> bool:
        return self.min_replica_count == 0


class AutomaticResources(Wire):
    min_replica_count: int = 0
    max_replica_count: int = 0


class DeployedModelStatus(Wire):
    message: str = ""
    last_update_time: str | None = None
    available_replica_count: int = 0


class DeployedModel(Wire):
    id: str | None = None
    model: str = ""
    model_version_id: str | None = None
    display_name: str | None = None
    create_time: str | None = None
    dedicated_resources: DedicatedResources | None = None
    automatic_resources: AutomaticResources | None = None
    status: DeployedModelStatus | None = None


class Endpoint(Wire):
    name: str | None = None
    display_name: str = ""
    description: str | None = None
    dedicated_endpoint_enabled: bool | None = None
    dedicated_endpoint_dns: str | None = None  # output only: set at create (local.vertex.dedicated)
    deployed_models: list[DeployedModel] = Field(default_factory=list)
    traffic_split: dict[str, int] = Field(default_factory=dict)
    etag: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    create_time: str | None = None
    update_time: str | None = None


class UploadModelRequest(Wire):
    parent_model: str | None = None
    model_id: str | None = None
    model: Model
    service_account: str | None = None


class DeployModelRequest(Wire):
    deployed_model: DeployedModel
    traffic_split: dict[str, int] = Field(default_factory=dict)


class UndeployModelRequest(Wire):
    deployed_model_id: str
    traffic_split: dict[str, int] = Field(default_factory=dict)


class MutateDeployedModelRequest(Wire):
    deployed_model: DeployedModel
    update_mask: str | dict[str, Any] = ""


class Operation(Wire):
    name: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    done: bool = False
    error: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
