"""Machine type x accelerator x count combinations Vertex AI online prediction accepts.

Checked before a deploy starts, so a typo fails in seconds with the valid choices listed
instead of minutes later inside a Vertex operation. Sources: Vertex AI "Configure compute
resources for inference" (GPU machine families); extend the table as Google adds machines.
"""

from __future__ import annotations

from modeldrop.errors import PermanentError

_N1 = [f"n1-standard-{n}" for n in (4, 8, 16, 32)] + [f"n1-highmem-{n}" for n in (4, 8, 16, 32)]

# accelerator -> machine type -> accepted accelerator counts
GPU_MACHINES: dict[str, dict[str, frozenset[int]]] = {
    "NVIDIA_L4": {
        "g2-standard-4": frozenset({1}),
        "g2-standard-8": frozenset({1}),
        "g2-standard-12": frozenset({1}),
        "g2-standard-16": frozenset({1}),
        "g2-standard-24": frozenset({2}),
        "g2-standard-32": frozenset({1}),
        "g2-standard-48": frozenset({4}),
        "g2-standard-96": frozenset({8}),
    },
    "NVIDIA_TESLA_T4": {name: frozenset({1, 2, 4}) for name in _N1},
    "NVIDIA_TESLA_V100": {name: frozenset({1, 2, 4, 8}) for name in _N1},
    "NVIDIA_TESLA_P4": {name: frozenset({1, 2, 4}) for name in _N1},
    "NVIDIA_TESLA_P100": {name: frozenset({1, 2, 4}) for name in _N1},
    "NVIDIA_TESLA_A100": {
        "a2-highgpu-1g": frozenset({1}),
        "a2-highgpu-2g": frozenset({2}),
        "a2-highgpu-4g": frozenset({4}),
        "a2-highgpu-8g": frozenset({8}),
        "a2-megagpu-16g": frozenset({16}),
    },
    "NVIDIA_A100_80GB": {f"a2-ultragpu-{n}g": frozenset({n}) for n in (1, 2, 4, 8)},
    "NVIDIA_H100_80GB": {f"a3-highgpu-{n}g": frozenset({n}) for n in (1, 2, 4, 8)},
    "NVIDIA_H100_MEGA_80GB": {"a3-megagpu-8g": frozenset({8})},
    "NVIDIA_H200_141GB": {"a3-ultragpu-8g": frozenset({8})},
}

CPU_MACHINES = frozenset(
    [f"n1-standard-{n}" for n in (2, 4, 8, 16, 32)]
    + [f"n1-highmem-{n}" for n in (2, 4, 8, 16, 32)]
    + [f"n2-standard-{n}" for n in (2, 4, 8, 16, 32, 48, 64, 80)]
    + [f"e2-standard-{n}" for n in (2, 4, 8, 16, 32)]
)

# What a deploy gets when it names an accelerator and count but no machine type.
_DEFAULT_L4 = {1: "g2-standard-12", 2: "g2-standard-24", 4: "g2-standard-48", 8: "g2-standard-96"}
DEFAULT_CPU_MACHINE = "n1-standard-8"


def default_machine_type(accelerator: str | None, count: int) -> str:
    """The machine a deploy gets when it names none; PermanentError when nothing fits."""
    if accelerator is None:
        return DEFAULT_CPU_MACHINE
    if accelerator == "NVIDIA_L4" and count in _DEFAULT_L4:
        return _DEFAULT_L4[count]
    machines = GPU_MACHINES.get(accelerator)
    if machines is None:
        raise PermanentError(_unknown_accelerator(accelerator))
    fitting = sorted(name for name, counts in machines.items() if count in counts)
    if not fitting:
        raise PermanentError(
            f"no machine takes {count} x {accelerator}; accepted counts: "
            f"{', '.join(map(str, sorted(set().union(*machines.values()))))}"
        )
    return fitting[0]


def check(machine_type: str, accelerator: str | None, count: int) -> list[str]:
    """Why this combination can't be deployed (empty when Vertex accepts it)."""
    if accelerator is None:
        if machine_type in CPU_MACHINES or any(machine_type in m for m in GPU_MACHINES.values()):
            return []
        return [f"unknown machine type {machine_type!r} for a CPU-only deployment"]
    machines = GPU_MACHINES.get(accelerator)
    if machines is None:
        return [_unknown_accelerator(accelerator)]
    counts = machines.get(machine_type)
    if counts is None:
        return [
            f"{machine_type} does not take {accelerator}; machines that do: {', '.join(sorted(machines))}"
        ]
    if count not in counts:
        return [
            f"{machine_type} takes {' or '.join(map(str, sorted(counts)))} x {accelerator}, not {count}"
        ]
    return []


def _unknown_accelerator(accelerator: str) -> str:
    return f"unknown accelerator {accelerator!r}; known: {', '.join(sorted(GPU_MACHINES))}"
