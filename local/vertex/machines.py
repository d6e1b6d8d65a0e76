"""Dedicated resources of a deploy: machine, accelerators and replica counts, checked as Vertex checks them."""

from __future__ import annotations

from local.vertex import scale_to_zero, versions
from local.vertex.errors import invalid
from local.vertex.fidelity import Fidelity
from local.vertex.resources import DeployedModel, MachineSpec

# Machine families whose accelerators are fixed: a mismatch is refused as Vertex refuses it.
FAMILIES = {
    "g2-": {"NVIDIA_L4"},
    "a2-highgpu-": {"NVIDIA_TESLA_A100"},
    "a2-ultragpu-": {"NVIDIA_A100_80GB"},
    "a3-highgpu-": {"NVIDIA_H100_80GB"},
    "a3-megagpu-": {"NVIDIA_H100_MEGA_80GB"},
    "a3-ultragpu-": {"NVIDIA_H200_141GB"},
    "a2-megagpu-": {"NVIDIA_TESLA_A100"},
}


# With strict rules: which accelerators each machine family takes, and how many per machine type
# (Vertex's "Configure compute resources for inference" tables; n1 takes the older GPUs).
N1_GPUS = {
    "NVIDIA_TESLA_T4": {1, 2, 4},
    "NVIDIA_TESLA_V100": {1, 2, 4, 8},
    "NVIDIA_TESLA_P100": {1, 2, 4},
    "NVIDIA_TESLA_P4": {1, 2, 4},
}
FIXED_COUNTS = {
    "g2-standard-4": 1, "g2-standard-8": 1, "g2-standard-12": 1, "g2-standard-16": 1,
    "g2-standard-24": 2, "g2-standard-32": 1, "g2-standard-48": 4, "g2-standard-96": 8,
    "a2-highgpu-1g": 1, "a2-highgpu-2g": 2, "a2-highgpu-4g": 4, "a2-highgpu-8g": 8,
    "a2-megagpu-16g": 16,
    "a2-ultragpu-1g": 1, "a2-ultragpu-2g": 2, "a2-ultragpu-4g": 4, "a2-ultragpu-8g": 8,
    "a3-highgpu-1g": 1, "a3-highgpu-2g": 2, "a3-highgpu-4g": 4, "a3-highgpu-8g": 8,
    "a3-megagpu-8g": 8, "a3-ultragpu-8g": 8,
}  # fmt: skip
CPU_FAMILIES = ("n1-", "n2-", "n2d-", "e2-", "c2-", "c2d-", "c3-", "m1-")


def check_machine(spec: MachineSpec) -> None:
    """Strict rules: known machine type, an accelerator its family takes, a count it comes in."""
    machine, accelerator, count = spec.machine_type, spec.accelerator_type, spec.accelerator_count
    if machine in FIXED_COUNTS:
        family = next(p for p in FAMILIES if machine.startswith(p))
        wanted = sorted(FAMILIES[family])[0]
        if accelerator != wanted:
            raise invalid(
                f'Accelerator "{accelerator or "none"}" is not supported for machine type '
                f'"{machine}"; it takes {wanted}.'
            )
        if count != FIXED_COUNTS[machine]:
            raise invalid(
                f'Machine type "{machine}" comes with {FIXED_COUNTS[machine]} {wanted}, '
                f"not accelerator_count {count}."
            )
        return
    if not machine.startswith(CPU_FAMILIES) or machine.count("-") < 2:
        raise invalid(f'Machine type "{machine}" is not supported for online prediction.')
    if accelerator is None:
        return
    if not machine.startswith("n1-") or accelerator not in N1_GPUS:
        raise invalid(f'Accelerator "{accelerator}" is not supported for machine type "{machine}".')
    if count not in N1_GPUS[accelerator]:
        raise invalid(
            f"accelerator_count {count} of {accelerator} is not supported; "
            f"supported: {sorted(N1_GPUS[accelerator])}."
        )


def check_resources(
    deployed: DeployedModel,
    supported: list[str],
    strict: bool = False,
    fidelity: Fidelity | None = None,
    version: str | None = None,
) -> MachineSpec:
    """Refuse what Vertex refuses; fill the defaults it fills (maxReplicaCount = minReplicaCount).

    Replica counts follow `version` (default: the request's): v1 takes at least one replica,
    v1beta1 also zero (scale-to-zero, with its own fields)."""
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
    if resources.max_replica_count == 0:
        resources.max_replica_count = resources.min_replica_count
    scale_to_zero.check_replicas(
        resources, version or versions.current.get(), fidelity or Fidelity()
    )
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
    if strict:
        check_machine(spec)
    return spec
