"""Vertex failing 20% of calls (429/503/500) with added latency, and a GPU stockout: every request still ends exactly once."""

from __future__ import annotations

import pytest
from reliability.figures import Figures
from reliability.helpers import cpu_deploy, endpoints, model_versions, set_faults, upload
from reliability.plane import Plane
from support.builders import make_command

from modeldrop.results import Status

pytestmark = [pytest.mark.stack, pytest.mark.timeout(420)]

# Three rules of 7.17% each fail 1 - 0.9283^3 = 20% of calls, a third each as 429, 503 and 500.
RULE_RATE = 0.0717
FAULTS = {
    "rules": [{"method": "*", "rate": RULE_RATE, "code": code} for code in (429, 503, 500)],
    "latencyMs": {"*": 150},
    "seed": 11,
}
CPU_MODELS = [f"flaky-{n}" for n in range(4)]
GPU_MODELS = ["stockout-0", "stockout-1"]


def test_every_request_ends_once_under_vertex_faults_and_a_stockout(
    plane: Plane, figures: Figures
) -> None:
    """With 20% of Vertex calls failing and 150 ms added to each, uploads register, CPU deploys and undeploys succeed after Pub/Sub redeliveries, GPU deploys fail naming the stockout, each with one terminal result and nothing half-done after the next sweeps."""
    world = plane.world
    folders = [(m, "v1") for m in CPU_MODELS + GPU_MODELS]
    set_faults(plane.vertex.url, **FAULTS, stockout=True)
    errors_before = plane.function_errors()
    for model, version in folders:
        upload(world, model, version)
    uploads = plane.deliver_uploads(plane.notifications(), [1] * 3 * len(folders))
    plane.wait_uploads(folders, timeout_s=120)

    deploys = [cpu_deploy(m, idle_ttl="1h") for m in CPU_MODELS]
    deploys += [
        make_command("deploy", model=m, accelerator="NVIDIA_L4", idle_ttl="1h") for m in GPU_MODELS
    ]
    for body in deploys:
        plane.publish(body)
    deploy_ids = [c["request_id"] for c in deploys]
    ticks = plane.sweep_until(lambda: plane.answered(deploy_ids), max_ticks=60)
    assert ticks <= 60, plane.logs_tail()

    undeploys = [make_command("undeploy", endpoint=m) for m in CPU_MODELS[:2]]
    for body in undeploys:
        plane.publish(body)
    undeploy_ids = [c["request_id"] for c in undeploys]
    ticks += plane.sweep_until(lambda: plane.answered(undeploy_ids), max_ticks=60)
    # The next sweeps, with the faults still on, must leave nothing half-done.
    for _ in range(2):
        plane.tick()
    errors = plane.function_errors() - errors_before
    set_faults(plane.vertex.url)  # read back without faults
    plane.tick()
    seen = world.results(timeout_s=2)

    terminal = {
        rid: [r for r in seen if r.request_id == rid and r.terminal]
        for rid in deploy_ids + undeploy_ids
    }
    # Over the whole run, not only the wait: an upload the sweep finished still ends once.
    uploads_done = [r for r in seen if r.kind == "upload" and r.terminal]
    unexpected = [line for line in plane.error_lines() if "failed unexpectedly" in line]
    served = endpoints(plane.vertex.url, world)
    versions = sum(len(model_versions(plane.vertex.url, world, m)) for m, _ in folders)
    dead = plane.dead_letters()
    failed = [r for rs in terminal.values() for r in rs if r.status is Status.FAILED]
    figures.record(
        "faults",
        uploads=len(folders),
        commands=len(terminal),
        upload_deliveries=uploads["deliveries"] + uploads["redelivered"],
        function_errors_retried=errors,
        upload_results=len(uploads_done),
        versions_registered=versions,
        terminal_results=sum(len(rs) for rs in terminal.values()),
        lost=sum(1 for rs in terminal.values() if not rs),
        duplicated=sum(1 for rs in terminal.values() if len(rs) > 1),
        failed_naming_stockout=sum(1 for r in failed if "stockout" in " ".join(r.reasons)),
        ticks=ticks,
        dead_letters=len(dead),
        leases_held=len(plane.lease_holders()),
        operations_in_flight=len(world.ctx.state.operations()),
    )
    assert sorted((r.model, r.status) for r in uploads_done) == sorted(
        (m, Status.REGISTERED) for m, _ in folders
    )
    assert versions == len(folders)
    assert unexpected == []  # every injected 429/500/503 is a retry, never a fault of modeldrop
    assert {rid: len(rs) for rid, rs in terminal.items()} == {rid: 1 for rid in terminal}
    statuses = {rid: rs[0].status for rid, rs in terminal.items()}
    assert [statuses[c["request_id"]] for c in deploys] == [Status.READY] * len(CPU_MODELS) + [
        Status.FAILED
    ] * len(GPU_MODELS)
    assert [statuses[rid] for rid in undeploy_ids] == [Status.SUCCEEDED] * len(undeploys)
    assert len(failed) == len(GPU_MODELS)
    assert all(
        "RESOURCE_EXHAUSTED" in " ".join(r.reasons) or "stockout" in " ".join(r.reasons)
        for r in failed
    )
    # Nothing half-done: GPU endpoints serve nothing, undeployed ones are empty, the rest serve one.
    assert {e: len(d) for e, d in served.items() if e in CPU_MODELS} == {
        m: (0 if m in CPU_MODELS[:2] else 1) for m in CPU_MODELS
    }
    assert all(not served.get(m) for m in GPU_MODELS)
    assert dead == []
    assert plane.lease_holders() == {}
    assert world.ctx.state.operations() == []
    assert all(plane.alive().values())
