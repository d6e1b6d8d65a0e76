"""At-least-once delivery: every notification and command arrives 2-3 times, shuffled, and nothing happens twice."""

from __future__ import annotations

import random
import time

import pytest
from reliability.figures import Figures
from reliability.helpers import cpu_deploy, endpoints, model_versions, upload
from reliability.plane import Plane

from modeldrop.results import Status

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

MODELS = ("dup-alpha", "dup-beta")
VERSIONS = ("v1", "v2")


def test_duplicated_shuffled_deliveries_do_everything_exactly_once(
    plane: Plane, figures: Figures
) -> None:
    """Uploads and deploy commands delivered 2-3 times in shuffled order give one version per upload, one deployment per deploy, one terminal result per request, and no orphan endpoint."""
    rng = random.Random(7)
    world = plane.world
    folders = [(m, v) for m in MODELS for v in VERSIONS]
    for model, version in folders:
        upload(world, model, version)
    notes = plane.notifications()
    assert len(notes) == 3 * len(folders)
    uploads = plane.deliver_uploads(notes, [rng.choice((2, 3)) for _ in notes], seed=7)
    registered = plane.wait_uploads(folders, timeout_s=90)
    assert {(r.model, r.version) for r in registered if r.terminal} == set(folders), (
        plane.logs_tail()
    )

    commands = [cpu_deploy(m, version=v, endpoint=f"{m}-{v}", idle_ttl="1h") for m, v in folders]
    deliveries = [c for c in commands for _ in range(rng.choice((2, 3)))]
    rng.shuffle(deliveries)
    for body in deliveries:
        plane.publish(body)
    request_ids = [c["request_id"] for c in commands]

    def all_answered() -> bool:
        seen = world.results(timeout_s=0)
        return set(request_ids) <= {r.request_id for r in seen if r.terminal}

    ticks = plane.sweep_until(all_answered, max_ticks=30)
    assert ticks <= 30, plane.logs_tail()
    # Late duplicates still in flight must change nothing: let them land, then look.
    time.sleep(3)
    plane.tick()
    seen = world.results(timeout_s=2)

    upload_results = {
        f: [r for r in seen if r.kind == "upload" and (r.model, r.version) == f and r.terminal]
        for f in folders
    }
    versions = {m: model_versions(plane.vertex.url, world, m) for m in MODELS}
    command_results = {
        rid: [r for r in seen if r.request_id == rid and r.terminal] for rid in request_ids
    }
    served = endpoints(plane.vertex.url, world)
    figures.record(
        "duplicates",
        uploads=len(folders),
        notifications=len(notes),
        notification_deliveries=uploads["deliveries"],
        commands=len(commands),
        command_deliveries=len(deliveries),
        versions_registered=sum(len(v) for v in versions.values()),
        upload_terminal_results=sum(len(r) for r in upload_results.values()),
        command_terminal_results=sum(len(r) for r in command_results.values()),
        deployments=sum(len(d) for d in served.values()),
        endpoints=len(served),
        ticks=ticks,
    )
    assert {f: [r.status for r in rs] for f, rs in upload_results.items()} == {
        f: [Status.REGISTERED] for f in folders
    }
    assert {m: len(v) for m, v in versions.items()} == {m: len(VERSIONS) for m in MODELS}
    assert {rid: [r.status for r in rs] for rid, rs in command_results.items()} == {
        rid: [Status.READY] for rid in request_ids
    }
    assert sorted(served) == sorted(f"{m}-{v}" for m, v in folders)
    assert {e: len(d) for e, d in served.items()} == {e: 1 for e in served}
    assert plane.lease_holders() == {}
    assert all(plane.alive().values())
