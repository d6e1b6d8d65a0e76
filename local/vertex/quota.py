"""GPU quota per region: a deploy that would exceed it is refused at once, as Vertex refuses it.

Quota is checked when the request arrives (429 RESOURCE_EXHAUSTED naming the quota metric, in the
shape Google's quota errors take: "The following quota metrics exceed quota limits: ..."); a
stockout (no capacity in the zone) shows later, on the operation. A caller tells them apart by
where the error comes and by its words: quota names a metric, a stockout names the zone's resources.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from local.vertex.errors import ApiError
from local.vertex.resources import DeployedModel, Endpoint, MachineSpec


def metric(accelerator: str) -> str:
    """The serving quota metric of an accelerator, e.g. custom_model_serving_nvidia_l4_gpus."""
    short = accelerator.lower().replace("nvidia_tesla_", "nvidia_").replace("_80gb", "")
    return f"aiplatform.googleapis.com/custom_model_serving_{short}_gpus"


def in_use(endpoints: Iterable[Endpoint], accelerator: str) -> int:
    """GPUs of `accelerator` held by deployed models (max replicas count against quota)."""
    total = 0
    for endpoint in endpoints:
        for deployed in endpoint.deployed_models:
            resources = deployed.dedicated_resources
            spec = resources.machine_spec if resources else None
            if resources and spec and spec.accelerator_type == accelerator:
                total += spec.accelerator_count * max(
                    resources.max_replica_count, resources.min_replica_count
                )
    return total


def check(
    quota: Mapping[str, int],
    machine: MachineSpec,
    deployed: DeployedModel,
    endpoints: Iterable[Endpoint],
) -> None:
    """RESOURCE_EXHAUSTED when this deploy's GPUs plus those in use exceed the region's quota."""
    accelerator = machine.accelerator_type
    if not accelerator or accelerator not in quota:
        return
    resources = deployed.dedicated_resources
    replicas = max(resources.max_replica_count, resources.min_replica_count) if resources else 1
    wanted = machine.accelerator_count * replicas
    if wanted + in_use(endpoints, accelerator) > quota[accelerator]:
        raise ApiError(
            "RESOURCE_EXHAUSTED",
            f"The following quota metrics exceed quota limits: {metric(accelerator)}",
        )
