"""Races: conflicting commands on one endpoint at once are serialized; the sweep never tears down a deployment that is serving."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from reliability.figures import Figures
from reliability.helpers import cpu_deploy, endpoints, upload
from reliability.plane import Plane
from support.builders import make_command

from modeldrop.results import Status

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

IDLE_TTL_S = 8


def register(plane: Plane, folders: list[tuple[str, str]]) -> None:
    for model, version in folders:
        upload(plane.world, model, version)
    plane.deliver_uploads(plane.notifications(), [1] * 3 * len(folders))
    done = plane.wait_uploads(folders, timeout_s=60)
    assert {(r.model, r.version) for r in done if r.terminal} >= set(folders)


def deploy_ready(plane: Plane, commands: list[dict[str, object]]) -> None:
    for body in commands:
        plane.publish(body)
    ids = [str(c["request_id"]) for c in commands]
    assert plane.sweep_until(lambda: plane.answered(ids), max_ticks=20) <= 20, plane.logs_tail()


def test_conflicting_commands_on_one_endpoint_are_serialized(
    plane: Plane, figures: Figures
) -> None:
    """A deploy of v2 and an undeploy hit one endpoint at once: one runs, the other retries until the endpoint is free, each ends in one terminal success, and the endpoint ends as one of the two orders leaves it."""
    world = plane.world
    register(plane, [("race", "v1"), ("race", "v2")])
    deploy_ready(plane, [cpu_deploy("race", version="v1", idle_ttl="1h")])
    canary = cpu_deploy("race", version="v2", idle_ttl="1h")
    undeploy = make_command("undeploy", endpoint="race")
    errors_before = plane.function_errors()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(plane.publish, [canary, undeploy]))
    ids = [canary["request_id"], undeploy["request_id"]]
    ticks = plane.sweep_until(lambda: plane.answered(ids), max_ticks=40)
    time.sleep(3)
    plane.tick()
    seen = world.results(timeout_s=1)
    terminal = {rid: [r for r in seen if r.request_id == rid and r.terminal] for rid in ids}
    served = [d["displayName"] for d in endpoints(plane.vertex.url, world).get("race", [])]
    figures.record(
        "race-conflicting-commands",
        commands=2,
        deliveries=2,
        conflicts_retried=plane.function_errors() - errors_before,
        terminal_results=sum(len(rs) for rs in terminal.values()),
        lost=sum(1 for rs in terminal.values() if not rs),
        duplicated=sum(1 for rs in terminal.values() if len(rs) > 1),
        ticks=ticks,
        final_deployments=served,
    )
    assert {rid: [r.status for r in rs] for rid, rs in terminal.items()} == {
        canary["request_id"]: [Status.READY],
        undeploy["request_id"]: [Status.SUCCEEDED],
    }, plane.logs_tail()
    # Undeploy first leaves v2 alone; deploy first leaves nothing (the undeploy takes both).
    assert served in ([], ["race:v2"])
    assert plane.lease_holders() == {}
    assert world.ctx.state.operations() == []


def test_concurrent_duplicates_of_one_command_act_once(plane: Plane, figures: Figures) -> None:
    """An undeploy delivered three times at the same instant, on each of three endpoints, undeploys once and gets one terminal result."""
    world = plane.world
    models = [f"twice-{n}" for n in range(3)]
    register(plane, [(m, "v1") for m in models])
    deploy_ready(plane, [cpu_deploy(m, idle_ttl="1h") for m in models])
    undeploys = [make_command("undeploy", endpoint=m) for m in models]
    with ThreadPoolExecutor(max_workers=3 * len(models)) as pool:
        list(pool.map(plane.publish, [u for u in undeploys for _ in range(3)]))
    ids = [u["request_id"] for u in undeploys]
    plane.sweep_until(lambda: plane.answered(ids), max_ticks=15)
    time.sleep(3)
    plane.sweep_until(lambda: not world.ctx.state.operations(), max_ticks=3)
    seen = world.results(timeout_s=1)
    results = {rid: [r.status for r in seen if r.request_id == rid and r.terminal] for rid in ids}
    figures.record(
        "race-concurrent-duplicates",
        commands=len(ids),
        deliveries=3 * len(ids),
        terminal_results=sum(len(s) for s in results.values()),
        duplicated=sum(1 for s in results.values() if len(s) > 1),
        statuses=sorted(s.value for ss in results.values() for s in ss),
    )
    assert results == {rid: [Status.SUCCEEDED] for rid in ids}
    assert world.ctx.state.operations() == []


def predict(url: str) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps({"instances": [{"prompt": "hi"}]}).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def test_the_sweep_racing_a_burst_never_tears_down_a_serving_deployment(
    plane: Plane, figures: Figures
) -> None:
    """Every tick delivered twice at once: two deploys are reported ready once each; past their idle TTL, the one under a burst of predictions survives the sweeps racing the burst, and its idle twin is torn down once."""
    world = plane.world
    register(plane, [("hot", "v1"), ("cold", "v1")])
    ttl = f"{IDLE_TTL_S}s"
    deploys = [cpu_deploy("hot", idle_ttl=ttl), cpu_deploy("cold", idle_ttl=ttl)]
    for body in deploys:
        plane.publish(body)
    ids = [str(c["request_id"]) for c in deploys]
    assert plane.sweep_until(lambda: plane.answered(ids), max_ticks=20, at_once=2) <= 20
    time.sleep(IDLE_TTL_S + 1)  # both are now past their TTL: only traffic keeps one
    location = (
        f"{plane.vertex.url}/v1/projects/{world.settings.project}/locations/{world.settings.region}"
    )
    url = f"{location}/endpoints/hot:predict"
    statuses: list[int] = []
    stop = threading.Event()

    def burst() -> None:
        while not stop.is_set():
            statuses.append(predict(url))
            time.sleep(0.05)  # ~150 predictions/s from 8 senders: a burst, not a CPU hog

    senders = [threading.Thread(target=burst) for _ in range(8)]
    for sender in senders:
        sender.start()
    try:
        deadline = time.monotonic() + 10
        while not statuses and time.monotonic() < deadline:
            time.sleep(0.05)  # the first answered prediction lies inside the idle window
        plane.sweep_until(lambda: False, max_ticks=4, at_once=2)
    finally:
        stop.set()
        for sender in senders:
            sender.join(timeout=30)
    plane.sweep_until(lambda: not world.ctx.state.operations(), max_ticks=5)
    seen = world.results(timeout_s=2)
    torn = [r for r in seen if r.status is Status.TORN_DOWN]
    served = endpoints(plane.vertex.url, world)
    figures.record(
        "race-sweep-vs-burst",
        predictions=len(statuses),
        answered=sum(1 for s in statuses if s == 200),
        ticks=plane.ticks,
        ready_results=sum(1 for r in seen if r.request_id in ids and r.terminal),
        hot_torn_down=sum(1 for r in torn if r.endpoint == "hot"),
        cold_torn_down=sum(1 for r in torn if r.endpoint == "cold"),
    )
    assert sorted(r.request_id for r in seen if r.request_id in ids and r.terminal) == sorted(ids)
    assert statuses and all(s == 200 for s in statuses)
    assert len(served.get("hot", [])) == 1
    assert [r.endpoint for r in torn] == ["cold"]
    assert not served.get("cold")
