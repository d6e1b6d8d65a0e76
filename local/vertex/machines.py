"""Dedicated resources of a deploy: machine, accelerators and replica counts, checked as Vertex checks them."""

from __future__ import annotations

from local.vertex.errors import invalid
from local.vertex.resources import DeployedModel, MachineSpec

# Machine families whose accelerators are fixed: a mismatch is refused as Vertex refuses it.
FAMILIES = {
    "g2-": {"NVIDIA_L4"},
    "a2-highgpu-": {"NVIDIA_TESLA_A100"},
    "a2-ultragpu-": {"NVIDIA_A100_80GB"},
    "a3-highgpu-": {"NVIDIA_H100_80GB"},
    "a3-megagpu-": {"NVIDIA_H100_MEGA_80GB"},
    "a3-ultragpu-": {"NVIDIA_H200_141GB"},
}


def check_resources(deployed: DeployedModel, supported: list[str]) -> MachineSpec:
    """Refuse what Vertex refuses; fill the defaults it fills (maxReplicaCount = minReplicaCount)."""
    resources = deployed.dedicated_resources
    if resources is None:
        if "DEDICATED_RESOURCES" in supported or deployed.automatic_resources is None:
            raise invalid(
                "deployed_model.dedicated_resources is required: this model supports "
                f"{supported or ['DEDICATED_RESOURCES']}."
            )
        raise invalid("The emulator deploys with dedicated_resources only.")
    spec = resources.machine_spec
    if spec is None or not spec.machine_type:
        raise invalid("dedicated_resources.machine_spec.machine_type is required.")
    if resources.min_replica_count < 1:
        raise invalid("dedicated_resources.min_replica_count must be at least 1.")
    if resources.max_replica_count == 0:
        resources.max_replica_count = resources.min_replica_count
    if resources.max_replica_count < resources.min_replica_count:
        raise invalid(
            f"dedicated_resources.max_replica_count ({resources.max_replica_count}) must not be "
            f"less than min_replica_count ({resources.min_replica_count})."
        )
    if spec.accelerator_type and spec.accelerator_count < 1:
        raise invalid("machine_spec.accelerator_count must be at least 1 with an accelerator_type.")
    if spec.accelerator_count and not spec.accelerator_type:
        raise invalid("machine_spec.accelerator_type is required with an accelerator_count.")
    for prefix, allowed in FAMILIES.items():
        if spec.machine_type.startswith(prefix) and spec.accelerator_type not in allowed:
            raise invalid(
                f"Machine type {spec.machine_type} requires accelerator {sorted(allowed)[0]}, "
                f"not {spec.accelerator_type or 'none'}."
            )
    return spec
