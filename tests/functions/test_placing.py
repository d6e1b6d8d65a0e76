"""Stockout-aware placement over the wire: ordered placements fall back on a stockout, never on
quota, and a wake tries the placement that last served first (the real emulator, the real SDK)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from functions.test_sweeper import registered, send, terminal
from functions.world import make_world
from support.builders import make_command

from local.processes import stop
from local.vertex.testing import launch
from modeldrop.results import Status
from modeldrop.sweeper import sweep

pytestmark = pytest.mark.stack

T4 = {"machine_type": "n1-standard-4", "accelerator": "NVIDIA_TESLA_T4", "accelerator_count": 1}
L4 = {"machine_type": "g2-standard-12", "accelerator": "NVIDIA_L4", "accelerator_count": 1}
A100 = {"machine_type": "a2-highgpu-1g", "accelerator": "NVIDIA_TESLA_A100", "accelerator_count": 1}


@pytest.fixture
def stockout(vertex_url: str) -> Iterator[Any]:
    """Set the shared emulator's stockout for one test (cleared after it)."""

    def put(entries: list[str]) -> None:
        httpx.put(f"{vertex_url}/emulator/faults", json={"stockout": entries}, timeout=10)

    yield put
    httpx.delete(f"{vertex_url}/emulator/faults", timeout=10)


def placed(model: str, placements: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    body = make_command("deploy", model=model, placements=placements, **overrides)
    return body


def test_two_stocked_out_placements_then_ready_on_the_third(vertex_url: str, stockout: Any) -> None:
    """With T4 and L4 stocked out, a deploy listing T4, L4, A100 ends ready on the A100, its result naming the placement that served and why each earlier one was refused."""
    world = make_world(vertex_url)
    registered(world, "placed")
    stockout(["NVIDIA_TESLA_T4", "NVIDIA_L4"])
    command = placed("placed", [T4, L4, A100], serving_args=["--max-model-len", "2048"])
    accepted = send(world, command)
    assert accepted is not None and accepted.status is Status.ACCEPTED
    ready = terminal(world, command["request_id"], timeout_s=90)
    assert ready.status is Status.READY, ready
    assert ready.details["placement"] == A100
    assert "placement 3 of 3 (a2-highgpu-1g with 1 x NVIDIA_TESLA_A100)" in ready.message
    assert "after 2 refused" in ready.message
    assert [r.split(" refused")[0] for r in ready.reasons] == [
        "placement 1 (n1-standard-4 with 1 x NVIDIA_TESLA_T4)",
        "placement 2 (g2-standard-12 with 1 x NVIDIA_L4)",
    ]
    assert all("RESOURCE_EXHAUSTED" in r or "stockout" in r for r in ready.reasons)
    [served] = ready.details["placements"]
    assert [r["placement"] for r in served["refused"]] == [T4, L4]
    endpoint = world.ctx.vertex.endpoint("placed")
    assert endpoint is not None and [d.machine_type for d in endpoint.deployments] == [
        "a2-highgpu-1g"
    ]
    # One change at a time: the serving args followed the deployment to its final id, nothing else is left.
    deployed = endpoint.deployments[0].id
    kept = world.ctx.state.serving_args("placed", deployed)
    assert kept is not None and kept.args == ["--max-model-len", "2048"]
    assert world.ctx.state.operations() == []
    results = [r for r in world.results(timeout_s=0) if r.request_id == command["request_id"]]
    assert [r.status for r in results if r.terminal] == [Status.READY]


def test_every_placement_stocked_out_fails_naming_each(vertex_url: str, stockout: Any) -> None:
    """When every placement is stocked out the deploy ends failed once, with one reason per placement, and nothing is left deployed."""
    world = make_world(vertex_url)
    registered(world, "nowhere")
    stockout(["NVIDIA_TESLA_T4", "NVIDIA_L4"])
    command = placed("nowhere", [T4, L4])
    assert send(world, command) is not None
    failed = terminal(world, command["request_id"], timeout_s=90)
    assert failed.status is Status.FAILED
    assert failed.reasons[0].startswith(
        "placement 1 (n1-standard-4 with 1 x NVIDIA_TESLA_T4) refused"
    )
    assert any("NVIDIA_L4" in r for r in failed.reasons[1:])
    endpoint = world.ctx.vertex.endpoint("nowhere")
    assert endpoint is not None and endpoint.deployments == ()
    assert world.ctx.state.operations() == []


def test_a_quota_refusal_is_reported_as_quota_and_not_fallen_back_on(
    tmp_path: Path, gcs_host: str
) -> None:
    """Over the L4 quota, a deploy listing L4 then T4 fails at once naming the quota metric; the T4 is never tried (quota is the project's limit, not a stockout)."""
    vertex = launch(tmp_path, "--rule", "quota_gpus=NVIDIA_L4:1")
    try:
        world = make_world(vertex.url)
        registered(world, "quota")
        two_l4 = {**L4, "machine_type": "g2-standard-24", "accelerator_count": 2}
        failed = send(world, placed("quota", [two_l4, T4]))
        assert failed is not None and failed.status is Status.FAILED
        assert "custom_model_serving_nvidia_l4_gpus" in failed.message
        assert "quota" in failed.message
        endpoint = world.ctx.vertex.endpoint("quota")
        assert endpoint is not None and endpoint.deployments == ()
        assert world.ctx.state.operations() == []
    finally:
        stop(vertex.child)


def test_wake_tries_the_placement_that_last_served_first(vertex_url: str, stockout: Any) -> None:
    """A deploy that served on its second placement (L4) is torn down; its wake deploys the L4 first, even with the T4 back in stock, and keeps the others to fall back on."""
    world = make_world(vertex_url)
    registered(world, "rewake")
    stockout(["NVIDIA_TESLA_T4"])
    command = placed("rewake", [T4, L4, A100], idle_ttl="150s")
    assert send(world, command) is not None
    assert terminal(world, command["request_id"], timeout_s=90).status is Status.READY
    stockout([])
    later = datetime.now(UTC) + timedelta(seconds=155 + world.settings.metrics_delay_s)
    [torn] = sweep(world.ctx, later).torn_down
    assert terminal(world, torn, clock=lambda: later).status is Status.TORN_DOWN
    remembered = world.ctx.state.teardown("rewake")
    assert remembered is not None
    assert remembered.deployments[0]["placements"] == [L4, T4, A100]
    wake = make_command("wake", endpoint="rewake")
    assert send(world, wake) is not None
    woken = terminal(world, wake["request_id"], timeout_s=90)
    assert woken.status is Status.READY and woken.details["placement"] == L4
    endpoint = world.ctx.vertex.endpoint("rewake")
    assert endpoint is not None and [d.machine_type for d in endpoint.deployments] == [
        "g2-standard-12"
    ]


def test_a_stockout_at_the_request_moves_on_at_once(tmp_path: Path, gcs_host: str) -> None:
    """Where Vertex refuses the DeployModel request itself for a stockout (the rule stockout_at=request), the command moves to the next placement in the same function: one operation, ready on the third, both refusals named."""
    vertex = launch(
        tmp_path, "--rule", "stockout_at=request", "--stockout", "NVIDIA_TESLA_T4,NVIDIA_L4"
    )
    try:
        world = make_world(vertex.url)
        registered(world, "at-request")
        command = placed("at-request", [T4, L4, A100])
        accepted = send(world, command)
        assert accepted is not None and accepted.status is Status.ACCEPTED
        assert len(accepted.details["operations"]) == 1
        ready = terminal(world, command["request_id"], timeout_s=60)
        assert ready.status is Status.READY and ready.details["placement"] == A100
        assert len(ready.reasons) == 2 and "NVIDIA_TESLA_T4" in ready.reasons[0]
        assert world.ctx.state.operations() == []
    finally:
        stop(vertex.child)
