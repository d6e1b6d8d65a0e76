"""Stockout fallback through the whole plane: the first two placements stocked out, every deploy
ends ready on its third, each command published twice, and none is lost or answered twice."""

from __future__ import annotations

import time

import pytest
from reliability.figures import Figures
from reliability.helpers import endpoints, set_faults, upload
from reliability.plane import Plane
from support.builders import make_command

from modeldrop.results import Status

pytestmark = [pytest.mark.stack, pytest.mark.timeout(420)]

MODELS = [f"fallback-{n}" for n in range(4)]
PLACEMENTS = [
    {"machine_type": "n1-standard-4", "accelerator": "NVIDIA_TESLA_T4", "accelerator_count": 1},
    {"machine_type": "g2-standard-12", "accelerator": "NVIDIA_L4", "accelerator_count": 1},
    {"machine_type": "a2-highgpu-1g", "accelerator": "NVIDIA_TESLA_A100", "accelerator_count": 1},
]


def test_deploys_fall_back_to_their_third_placement_and_none_is_lost(
    plane: Plane, figures: Figures
) -> None:
    """With T4 and L4 stocked out, 4 deploys (each published twice) listing T4, L4, A100 all end ready on the A100 with one terminal result each, naming both refusals; nothing is left in flight."""
    world = plane.world
    folders = [(m, "v1") for m in MODELS]
    for model, version in folders:
        upload(world, model, version)
    plane.deliver_uploads(plane.notifications(), [1] * 3 * len(folders))
    plane.wait_uploads(folders, timeout_s=120)
    set_faults(plane.vertex.url, stockout=["NVIDIA_TESLA_T4", "NVIDIA_L4"])
    deploys = [
        make_command("deploy", model=m, placements=PLACEMENTS, idle_ttl="1h") for m in MODELS
    ]
    started = time.monotonic()
    for body in deploys:
        plane.publish(body, attempts=2)
    ids = [c["request_id"] for c in deploys]
    ticks = plane.sweep_until(lambda: plane.answered(ids), max_ticks=120)
    took_s = time.monotonic() - started
    assert ticks <= 120, plane.logs_tail()
    for _ in range(2):  # later sweeps must change nothing
        plane.tick()
    seen = world.results(timeout_s=2)
    terminal = {rid: [r for r in seen if r.request_id == rid and r.terminal] for rid in ids}
    served = endpoints(plane.vertex.url, world)
    on_third = [
        rs[0]
        for rs in terminal.values()
        if rs and rs[0].status is Status.READY and rs[0].details.get("placement") == PLACEMENTS[2]
    ]
    figures.record(
        "stockout_fallback",
        commands=len(ids),
        published=2 * len(ids),
        terminal_results=sum(len(rs) for rs in terminal.values()),
        lost=sum(1 for rs in terminal.values() if not rs),
        duplicated=sum(1 for rs in terminal.values() if len(rs) > 1),
        ready_on_third=len(on_third),
        refusals_named=sum(len(r.reasons) for r in on_third),
        ticks=ticks,
        seconds=round(took_s, 1),
        operations_in_flight=len(world.ctx.state.operations()),
        leases_held=len(plane.lease_holders()),
    )
    assert {rid: len(rs) for rid, rs in terminal.items()} == {rid: 1 for rid in ids}
    assert len(on_third) == len(MODELS)
    assert all(len(r.reasons) == 2 and "NVIDIA_L4" in r.reasons[1] for r in on_third)
    assert {
        m: [d["dedicatedResources"]["machineSpec"]["machineType"] for d in served[m]]
        for m in MODELS
    } == {m: ["a2-highgpu-1g"] for m in MODELS}
    assert world.ctx.state.operations() == []
    assert plane.lease_holders() == {}
