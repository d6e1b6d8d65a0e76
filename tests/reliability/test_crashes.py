"""A function killed at each step of a deploy: Pub/Sub redelivers, the sweep converges within two ticks, no lease stays held."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from reliability.figures import Figures
from reliability.helpers import cpu_deploy, endpoints, modelled_ticks, upload
from reliability.plane import CRASH_STEPS, CRASHING_SOURCE, Plane

from modeldrop.records import RequestState

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]


def wait_for(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not seen in {timeout_s:.0f} s")


@pytest.mark.parametrize("step", CRASH_STEPS)
def test_a_deploy_killed_at_each_step_converges(
    plane: Plane, figures: Figures, tmp_path: Path, step: str
) -> None:
    """on_command killed (SIGKILL by its PID) at `step` of a deploy: the redelivered command and the next sweeps give one deployment, one terminal result and no held lease, within two ticks."""
    world = plane.world
    model = f"crash-{step}"
    upload(world, model, "v1")
    plane.deliver_uploads(plane.notifications(), [1, 1, 1])
    assert plane.wait_uploads([(model, "v1")], timeout_s=60)
    marker = tmp_path / "paused"
    plane.kill("on_command")
    plane.start_function(
        "on_command",
        CRASHING_SOURCE,
        RELIABILITY_PAUSE_AT=step,
        RELIABILITY_MARKER=str(marker),
    )
    command = cpu_deploy(model, idle_ttl="1h")
    rid = command["request_id"]
    plane.publish(command)
    wait_for(marker.exists, 30, f"on_command reaching {step}")
    os.killpg(plane.functions["on_command"].pid, signal.SIGKILL)
    plane.kill("on_command")  # reaps the group
    held_after_crash = plane.lease_holders()
    # A fresh instance, as Cloud Functions starts one; the marker makes it run straight through.
    plane.start_function(
        "on_command", CRASHING_SOURCE, RELIABILITY_PAUSE_AT=step, RELIABILITY_MARKER=str(marker)
    )

    def redelivered() -> bool:
        record = world.ctx.state.request(rid)
        return record is not None and record.state is not RequestState.STARTED

    wait_for(redelivered, 60, "the redelivered command answered")

    def converged() -> bool:
        done = [r for r in world.results(timeout_s=0) if r.request_id == rid and r.terminal]
        return (
            bool(done)
            and not world.ctx.state.operations(model)
            and not plane.lease_holders()
            and len(endpoints(plane.vertex.url, world).get(model, [])) == 1
        )

    # Two ticks once Vertex's deploy has ended; the faithful emulator's modelled deploy adds its own.
    allowed = 2 + modelled_ticks("deploy_cpu", pause_s=1.5)
    ticks = plane.sweep_until(converged, max_ticks=allowed + 3, pause_s=1.5)
    time.sleep(2)
    plane.tick()
    results = [r for r in world.results(timeout_s=1) if r.request_id == rid and r.terminal]
    served = endpoints(plane.vertex.url, world)
    figures.record(
        f"crash-{step}",
        held_after_crash=len(held_after_crash),
        ticks_to_converge=ticks,
        terminal_results=len(results),
        deployments=len(served.get(model, [])),
        leases_held=len(plane.lease_holders()),
    )
    assert ticks <= allowed, plane.logs_tail()
    assert [r.status.value for r in results] == ["ready"]
    assert len(served.get(model, [])) == 1
    assert plane.lease_holders() == {}
