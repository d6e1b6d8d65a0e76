"""The sweep over the wire: operations followed to their end, idle teardown, wake, failures, drift repair."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from functions.conftest import CRASH_IMAGE
from functions.world import World, make_world, sound_files
from support.builders import make_command

from modeldrop.errors import TransientError
from modeldrop.events import PubSubMessage, StorageObject
from modeldrop.executor import on_message
from modeldrop.records import OperationRecord
from modeldrop.results import Result, Status
from modeldrop.sweeper import sweep
from modeldrop.uploads import on_object

pytestmark = pytest.mark.stack


class Killed(BaseException):
    """The function's process ends here (nothing in the function catches a BaseException)."""


def send(world: World, body: dict[str, Any], ctx: Any = None) -> Result | None:
    return on_message(
        PubSubMessage(data=json.dumps(body).encode()), ctx or world.ctx, datetime.now(UTC)
    )


def registered(world: World, model: str) -> None:
    for name, data in sound_files().items():
        world.put(model, "v1", name, data)
    obj = StorageObject(
        bucket=world.settings.weights_bucket, name=f"models/{model}/v1/config.json", generation=1
    )
    assert on_object(obj, world.ctx, datetime.now(UTC)) is not None


def deploy(model: str, **overrides: Any) -> dict[str, Any]:
    return {
        **make_command("deploy", model=model, machine_type="n1-standard-4", **overrides),
        "accelerator": None,
    }


def terminal(
    world: World,
    request_id: str,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    timeout_s: float = 30.0,
) -> Result:
    """Sweep (at `clock()`) until `request_id` has its terminal result; bounded in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sweep(world.ctx, clock())
        done = [r for r in world.results(timeout_s=0) if r.request_id == request_id and r.terminal]
        if done:
            assert len(done) == 1, done
            return done[0]
        time.sleep(0.3)
    raise AssertionError(f"no terminal result for {request_id} after {timeout_s} s")


def predict(world: World, endpoint: str) -> None:
    vertex_url, project = world.settings.vertex_api_endpoint, world.settings.project
    url = f"{vertex_url}/v1/projects/{project}/locations/us-central1/endpoints/{endpoint}:predict"
    request = urllib.request.Request(
        url,
        data=json.dumps({"instances": [{"prompt": "hi"}]}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_idle_deployments_are_torn_down_and_woken_while_busy_ones_stay(vertex_url: str) -> None:
    """Past its TTL, a deployment without predictions is undeployed (torn_down, GPU-hours) and `wake` brings it back, with its serving args; one with traffic stays."""
    world = make_world(vertex_url)
    args = ["--max-model-len", "2048"]
    for model in ("idle-one", "busy-one"):
        registered(world, model)
        command = deploy(model, idle_ttl="150s", serving_args=args)
        assert send(world, command) is not None
        assert terminal(world, command["request_id"]).status is Status.READY
    t0 = datetime.now(UTC)
    predict(world, "busy-one")
    # Past the TTL plus Monitoring's delay: the not-yet-ingested window is never read as idle.
    later = t0 + timedelta(seconds=155 + world.settings.metrics_delay_s)
    summary = sweep(world.ctx, later)
    assert len(summary.torn_down) == 1 and summary.torn_down[0].startswith("teardown-idle-one-")
    torn = terminal(world, summary.torn_down[0], clock=lambda: later)
    assert torn.status is Status.TORN_DOWN and torn.kind == "sweep"
    assert torn.details["idle_ttl_s"] == 150 and "gpu_hours_saved_per_day" in torn.details
    idle, busy = world.ctx.vertex.endpoint("idle-one"), world.ctx.vertex.endpoint("busy-one")
    assert idle is not None and idle.deployments == ()
    assert busy is not None and len(busy.deployments) == 1
    slept = summary.torn_down[0].removeprefix("teardown-idle-one-").rsplit("-", 1)[0]
    assert world.ctx.state.serving_args("idle-one", slept) is None
    assert world.ctx.state.serving_args("busy-one", busy.deployments[0].id) is not None
    wake = make_command("wake", endpoint="idle-one")
    assert send(world, wake) is not None
    assert terminal(world, wake["request_id"]).status is Status.READY
    woken = world.ctx.vertex.endpoint("idle-one")
    assert woken is not None and [d.version for d in woken.deployments] == ["v1"]
    kept = world.ctx.state.serving_args("idle-one", woken.deployments[0].id)
    assert kept is not None and kept.args == args


def test_keep_warm_and_grace_keep_deployments(vertex_url: str) -> None:
    """A keep-warm deployment and one inside the grace period survive a sweep far past their TTL."""
    world = make_world(vertex_url, deploy_grace="1d")
    registered(world, "warm")
    command = deploy("warm", idle_ttl="60s", keep_warm=True)
    assert send(world, command) is not None
    assert terminal(world, command["request_id"]).status is Status.READY
    summary = sweep(world.ctx, datetime.now(UTC) + timedelta(hours=3))
    assert summary.torn_down == []
    endpoint = world.ctx.vertex.endpoint("warm")
    assert endpoint is not None and len(endpoint.deployments) == 1


def test_a_deploy_that_fails_on_vertex_reports_its_reason(vertex_url: str) -> None:
    """A container that exits at start makes the deploy fail; the sweep publishes `failed` with Vertex's reason and log tail."""
    world = make_world(vertex_url, serving_image=CRASH_IMAGE)
    registered(world, "crashes")
    command = deploy("crashes")
    assert send(world, command) is not None
    failed = terminal(world, command["request_id"])
    assert failed.status is Status.FAILED
    assert any("Vertex" in reason for reason in failed.reasons)
    assert world.ctx.state.operations("crashes") == []


def test_a_function_killed_after_starting_a_deploy_is_repaired_by_the_sweep(
    vertex_url: str,
) -> None:
    """The deploy started but its operation was never recorded: the sweep sees the deployment and reports `ready`."""
    world = make_world(vertex_url)
    registered(world, "killed")
    real = world.ctx.vertex

    class DiesAfterDeploy:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def deploy(self, *args: Any) -> str:
            real.deploy(*args)
            raise Killed

    command = deploy("killed")
    with pytest.raises(Killed):
        send(world, command, dataclasses.replace(world.ctx, vertex=DiesAfterDeploy()))
    [intent] = world.ctx.state.operations("killed")
    assert intent.operation is None
    assert terminal(world, command["request_id"]).status is Status.READY
    assert world.ctx.state.operations("killed") == []


def test_a_stale_lease_from_a_crashed_function_is_cleared(vertex_url: str) -> None:
    """A lease whose holder died (expired, still named) is released by the sweep; a live one is left alone."""
    world = make_world(vertex_url)
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    world.ctx.state.acquire("crashed", "dead-request", long_ago)
    world.ctx.state.acquire("alive", "live-request", datetime.now(UTC))
    summary = sweep(world.ctx, datetime.now(UTC))
    assert summary.stale_leases_cleared == ["crashed"]
    world.ctx.state.acquire("crashed", "new-request", datetime.now(UTC))


def test_undeploy_scale_traffic_and_delete_endpoint_end_in_one_result_each(vertex_url: str) -> None:
    """scale, undeploy and a forced delete-endpoint each start an operation and end in exactly one `succeeded`."""
    world = make_world(vertex_url)
    registered(world, "lifecycle")
    command = deploy("lifecycle")
    send(world, command)
    assert terminal(world, command["request_id"]).status is Status.READY
    scale = make_command("scale", endpoint="lifecycle", min_replicas=1, max_replicas=3)
    assert send(world, scale) is not None
    assert terminal(world, scale["request_id"]).status is Status.SUCCEEDED
    split = make_command("traffic", endpoint="lifecycle", split={"v1": 100})
    result = send(world, split)
    assert result is not None and result.status is Status.SUCCEEDED
    refused = send(world, make_command("delete-endpoint", endpoint="lifecycle"))
    assert refused is not None and refused.status is Status.FAILED and "force" in refused.message
    unknown = send(world, make_command("traffic", endpoint="lifecycle", split={"v1": 50, "v9": 50}))
    assert (
        unknown is not None
        and unknown.status is Status.FAILED
        and "v9" in " ".join(unknown.reasons)
    )
    delete = make_command("delete-endpoint", endpoint="lifecycle", force=True)
    assert send(world, delete) is not None
    assert terminal(world, delete["request_id"]).status is Status.SUCCEEDED
    assert world.ctx.vertex.endpoint("lifecycle") is None


def test_endpoints_emptied_by_the_sweep_are_deleted_when_configured(vertex_url: str) -> None:
    """With delete_empty_endpoints, tearing down the last deployment also deletes its endpoint,
    once the undeploy has ended (Vertex refuses to delete an endpoint that still serves)."""
    world = make_world(vertex_url, delete_empty_endpoints="true")
    registered(world, "emptied")
    command = deploy("emptied", idle_ttl="60s")
    send(world, command)
    assert terminal(world, command["request_id"]).status is Status.READY
    later = datetime.now(UTC) + timedelta(minutes=10)
    [teardown] = sweep(world.ctx, later).torn_down
    assert terminal(world, teardown, clock=lambda: later).status is Status.TORN_DOWN
    # Deleting the endpoint is an operation of its own, started once the undeploy has ended.
    deleted = terminal(world, f"{teardown}-delete"[:128], clock=lambda: later)
    assert deleted.status is Status.SUCCEEDED and deleted.action == "delete-endpoint"
    assert world.ctx.vertex.endpoint("emptied") is None


def test_one_bad_operation_does_not_stop_the_sweep(vertex_url: str) -> None:
    """An operation Vertex no longer knows ends `failed`; one whose read fails is skipped; the rest are reported."""
    world = make_world(vertex_url)
    registered(world, "good-one")
    operations = f"projects/{world.settings.project}/locations/us-central1/operations"
    for rid, number in (("ghost", "424242"), ("flaky", "434343")):
        record = OperationRecord(
            operation=f"{operations}/{number}",
            request_id=rid,
            action="deploy",
            endpoint=rid,
            started_at=datetime.now(UTC),
        )
        world.ctx.state.record_operation(record)
    real = world.ctx.vertex

    class FlakyVertex:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def operation(self, name: str) -> Any:
            if name.endswith("434343"):
                raise TransientError("503 from Vertex")
            return real.operation(name)

    ctx = dataclasses.replace(world.ctx, vertex=FlakyVertex())
    command = deploy("good-one")
    send(world, command)
    deadline = time.monotonic() + 30
    summary = sweep(ctx, datetime.now(UTC))
    while command["request_id"] not in summary.reported and time.monotonic() < deadline:
        time.sleep(0.3)
        summary = sweep(ctx, datetime.now(UTC))
    assert any("434343" in error for error in summary.errors)
    results = {r.request_id: r.status for r in world.results(until=lambda rs: len(rs) >= 3)}
    assert results["ghost"] is Status.FAILED and results[command["request_id"]] is Status.READY
    assert [r.request_id for r in world.ctx.state.operations()] == ["flaky"]
