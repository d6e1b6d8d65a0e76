"""Machine type x accelerator x count: the combinations Vertex accepts pass, the rest fail with choices."""

from __future__ import annotations

import pytest

from modeldrop.errors import PermanentError
from modeldrop.machines import check, default_machine_type


@pytest.mark.parametrize(
    ("machine", "accelerator", "count"),
    [
        ("g2-standard-12", "NVIDIA_L4", 1),
        ("g2-standard-24", "NVIDIA_L4", 2),
        ("a2-highgpu-4g", "NVIDIA_TESLA_A100", 4),
        ("a3-highgpu-8g", "NVIDIA_H100_80GB", 8),
        ("n1-standard-8", "NVIDIA_TESLA_T4", 2),
        ("n1-standard-4", None, 1),
    ],
)
def test_accepted_combinations_pass(machine: str, accelerator: str | None, count: int) -> None:
    """Combinations Vertex documents for online prediction have no problems."""
    assert check(machine, accelerator, count) == []


@pytest.mark.parametrize(
    ("machine", "accelerator", "count", "needle"),
    [
        ("n1-standard-4", "NVIDIA_L4", 1, "g2-standard-12"),
        ("g2-standard-12", "NVIDIA_L4", 2, "takes 1"),
        ("g2-standard-12", "NVIDIA_K9000", 1, "unknown accelerator"),
        ("z9-huge", None, 1, "unknown machine type"),
    ],
)
def test_refused_combinations_name_the_valid_choices(
    machine: str, accelerator: str | None, count: int, needle: str
) -> None:
    """A wrong machine, count or accelerator fails with what would work."""
    assert any(needle in problem for problem in check(machine, accelerator, count))


def test_default_machines_fit_the_accelerator() -> None:
    """Without a machine type, the accelerator and count pick one that Vertex accepts."""
    for accelerator, count in [
        ("NVIDIA_L4", 1),
        ("NVIDIA_L4", 4),
        ("NVIDIA_H100_80GB", 8),
        ("NVIDIA_TESLA_T4", 1),
        (None, 1),
    ]:
        assert check(default_machine_type(accelerator, count), accelerator, count) == []
    with pytest.raises(PermanentError, match="accepted counts"):
        default_machine_type("NVIDIA_H100_MEGA_80GB", 3)
