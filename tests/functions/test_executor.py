"""on_command's logic over the wire: deploys start and return, duplicates, leases, bad and old commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from functions.world import World, make_world, sound_files
from support.builders import make_command

from modeldrop.errors import ConflictError
from modeldrop.events import PubSubMessage, StorageObject
from modeldrop.executor import on_message
from modeldrop.results import Result, Status
from modeldrop.sweeper import sweep
from modeldrop.uploads import on_object

pytestmark = pytest.mark.stack


def message(body: dict[str, Any] | bytes, publish_time: datetime | None = None) -> PubSubMessage:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return PubSubMessage(data=data, message_id="m-1", publish_time=publish_time)


def registered(world: World, model: str, version: str = "v1") -> None:
    for name, data in sound_files().items():
        world.put(model, version, name, data)
    obj = StorageObject(
        bucket=world.settings.weights_bucket,
        name=f"models/{model}/{version}/config.json",
        generation=1,
    )
    result = on_object(obj, world.ctx, datetime.now(UTC))
    assert result is not None and result.status is Status.REGISTERED


def deploy(model: str, **overrides: Any) -> dict[str, Any]:
    """A CPU-only deploy command (the emulator runs the echo image)."""
    body = make_command("deploy", model=model, **{"machine_type": "n1-standard-4", **overrides})
    return {**body, "accelerator": None}


def sweep_until(world: World, request_id: str, timeout_s: float = 30.0) -> Result:
    """Run the sweep until `request_id` has its terminal result (deploys of the echo image take ~1 s)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sweep(world.ctx, datetime.now(UTC))
        done = [r for r in world.results(timeout_s=0) if r.request_id == request_id and r.terminal]
        if done:
            return done[0]
        time.sleep(0.3)
    raise AssertionError(f"no terminal result for {request_id} after {timeout_s} s")


def test_a_deploy_starts_returns_and_the_sweep_reports_ready(vertex_url: str) -> None:
    """The function returns `accepted` without waiting; the sweep publishes `ready`; duplicates change nothing."""
    world = make_world(vertex_url)
    registered(world, "deploy-me")
    command = deploy("deploy-me", idle_ttl="45m")
    accepted = on_message(message(command), world.ctx, datetime.now(UTC))
    assert accepted is not None and accepted.status is Status.ACCEPTED and accepted.operation
    assert on_message(message(command), world.ctx, datetime.now(UTC)) is None
    ready = sweep_until(world, command["request_id"])
    assert ready.status is Status.READY
    endpoint = world.ctx.vertex.endpoint("deploy-me")
    assert endpoint is not None and len(endpoint.deployments) == 1
    assert (
        endpoint.labels["modeldrop-idle-ttl"] == "45m"
        and endpoint.labels["managed-by"] == "modeldrop"
    )
    terminal = [
        r
        for r in world.results(timeout_s=0)
        if r.request_id == command["request_id"] and r.terminal
    ]
    assert len(terminal) == 1


def test_a_deploy_is_noted_in_flight_for_the_gateway_until_the_sweep_reports_it(
    vertex_url: str,
) -> None:
    """deploys/<endpoint>.json names the deploy while it runs and takes its terminal status."""
    world = make_world(vertex_url)
    registered(world, "noted")
    command = deploy("noted")
    on_message(message(command), world.ctx, datetime.now(UTC))
    note = world.ctx.state.deploy_note("noted")
    assert note is not None and (note.request_id, note.status) == (command["request_id"], None)
    assert sweep_until(world, command["request_id"]).status is Status.READY
    ended = world.ctx.state.deploy_note("noted")
    assert ended is not None and ended.status == "ready"


def test_a_deployments_serving_args_are_recorded_before_it_deploys_and_go_when_undeployed(
    vertex_url: str,
) -> None:
    """serving-args/<endpoint>/<deployed model>.json holds the deploy's serving args from before
    the deploy starts until its undeploy has ended."""
    world = make_world(vertex_url)
    registered(world, "args-me")
    args = ["--max-model-len", "2048", "--enable-prefix-caching"]
    command = deploy("args-me", serving_args=args)
    accepted = on_message(message(command), world.ctx, datetime.now(UTC))
    assert accepted is not None and accepted.status is Status.ACCEPTED
    deployed_model_id = accepted.details["deployed_model_ids"][0]
    record = world.ctx.state.serving_args("args-me", deployed_model_id)
    assert record is not None and record.args == args
    assert record.request_id == command["request_id"] and record.version == "v1"
    assert sweep_until(world, command["request_id"]).status is Status.READY
    assert world.ctx.state.serving_args("args-me", deployed_model_id) is not None
    # Deployed again: the same ask is `ready` at once; another one is refused, naming the difference.
    again = on_message(message(deploy("args-me", serving_args=args)), world.ctx, datetime.now(UTC))
    assert again is not None and again.status is Status.READY, again
    for overrides, named in (
        ({"serving_args": ["--max-model-len", "1024"]}, "serving args"),
        ({"serving_args": args, "machine_type": "n1-standard-8"}, "n1-standard-4 (CPU)"),
        ({"serving_args": args, "min_replicas": 2}, "`scale`"),
    ):
        refused = on_message(message(deploy("args-me", **overrides)), world.ctx, datetime.now(UTC))
        assert refused is not None and refused.status is Status.FAILED, refused
        assert "already serves" in refused.message and named in " ".join(refused.reasons)
    undeploy = make_command("undeploy", endpoint="args-me")
    assert on_message(message(undeploy), world.ctx, datetime.now(UTC)) is not None
    assert sweep_until(world, undeploy["request_id"]).status is Status.SUCCEEDED
    assert world.ctx.state.serving_args("args-me", deployed_model_id) is None


def test_serving_args_vllm_does_not_know_fail_the_deploy_before_anything_is_made(
    vertex_url: str,
) -> None:
    """A deploy naming an unknown or owned flag ends `failed`, naming it; no endpoint is created."""
    world = make_world(vertex_url)
    registered(world, "bad-args")
    command = deploy("bad-args", serving_args=["--frobnicate", "--port", "9000"])
    result = on_message(message(command), world.ctx, datetime.now(UTC))
    assert result is not None and result.status is Status.FAILED
    reasons = " ".join(result.reasons)
    assert "--frobnicate is not a flag" in reasons and "--port is set by the model's" in reasons
    assert world.ctx.vertex.endpoint("bad-args") is None


def test_a_redeploy_keeps_the_endpoints_ttl_unless_it_names_one(vertex_url: str) -> None:
    """Redeploying without idle_ttl or keep_warm keeps the endpoint's; naming one changes it."""
    world = make_world(vertex_url)
    registered(world, "keep-ttl")
    first = deploy("keep-ttl", idle_ttl="45m", keep_warm=True)
    on_message(message(first), world.ctx, datetime.now(UTC))
    assert sweep_until(world, first["request_id"]).status is Status.READY
    again = deploy("keep-ttl")
    on_message(message(again), world.ctx, datetime.now(UTC))
    endpoint = world.ctx.vertex.endpoint("keep-ttl")
    assert endpoint is not None
    assert (endpoint.labels["modeldrop-idle-ttl"], endpoint.labels["modeldrop-keep-warm"]) == (
        "45m",
        "true",
    )
    sweep_until(world, again["request_id"])
    changed = deploy("keep-ttl", idle_ttl="5m")
    on_message(message(changed), world.ctx, datetime.now(UTC))
    endpoint = world.ctx.vertex.endpoint("keep-ttl")
    assert endpoint is not None and endpoint.labels["modeldrop-idle-ttl"] == "5m"


def test_a_held_lease_makes_a_conflicting_command_retry(vertex_url: str) -> None:
    """While another request holds the endpoint, a command raises ConflictError (retried), then succeeds."""
    world = make_world(vertex_url)
    registered(world, "contended")
    now = datetime.now(UTC)
    generation = world.ctx.state.acquire("contended", "someone-else", now)
    command = deploy("contended")
    with pytest.raises(ConflictError):
        on_message(message(command), world.ctx, now)
    world.ctx.state.release("contended", generation)
    retried = on_message(message(command), world.ctx, now)
    assert retried is not None and retried.status is Status.ACCEPTED


def test_a_second_command_waits_for_the_first_operation_on_its_endpoint(vertex_url: str) -> None:
    """A canary deploy sent while the first deploy runs is queued (acknowledged), then splits 90/10."""
    world = make_world(vertex_url)
    registered(world, "canary", "v1")
    registered(world, "canary", "v2")
    first = deploy("canary", version="v1")
    second = deploy("canary", version="v2", traffic_percent=10)
    assert on_message(message(first), world.ctx, datetime.now(UTC)) is not None
    queued = on_message(message(second), world.ctx, datetime.now(UTC))
    assert queued is not None and queued.status is Status.QUEUED
    assert sweep_until(world, first["request_id"]).status is Status.READY
    assert sweep_until(world, second["request_id"]).status is Status.READY
    endpoint = world.ctx.vertex.endpoint("canary")
    assert endpoint is not None
    shares = {d.version: endpoint.traffic_split.get(d.id, 0) for d in endpoint.deployments}
    assert shares == {"v1": 90, "v2": 10}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "invalid command"),
        ({**make_command("deploy"), "action": "explode"}, "action"),
        (make_command("deploy", model="gemma-tiny", colour="blue"), "colour"),
        (deploy("no-such-model"), "has no version"),
        (
            make_command(
                "deploy",
                model="never-uploaded",
                accelerator="NVIDIA_L4",
                machine_type="n1-standard-4",
            ),
            "has no version",
        ),
        (make_command("scale", endpoint="no-such-endpoint"), "does not exist"),
        (make_command("traffic", endpoint="no-such-endpoint"), "does not exist"),
        (make_command("wake", endpoint="no-such-endpoint"), "nothing was torn down"),
        (make_command("register", model="gemma-tiny", version="missing"), "is missing"),
    ],
)
def test_bad_commands_fail_once_with_a_reason(vertex_url: str, body: Any, needle: str) -> None:
    """Each bad command gets one `failed` result naming the problem, and is acknowledged (no raise)."""
    world = make_world(vertex_url)
    result = on_message(message(body), world.ctx, datetime.now(UTC))
    assert result is not None and result.status in (Status.FAILED, Status.REJECTED)
    assert needle in result.message + " ".join(result.reasons)
    assert on_message(message(body), world.ctx, datetime.now(UTC)) is None
    published = world.results(until=lambda rs: len(rs) >= 1, timeout_s=5)
    assert [r.status for r in published] == [result.status]


def test_undeploying_from_a_missing_endpoint_has_nothing_to_do(vertex_url: str) -> None:
    """As delete-endpoint of a missing endpoint, undeploy of one succeeds with "nothing to undeploy"."""
    world = make_world(vertex_url)
    result = on_message(
        message(make_command("undeploy", endpoint="no-such-endpoint")), world.ctx, datetime.now(UTC)
    )
    assert result is not None and result.status is Status.SUCCEEDED
    assert "nothing to undeploy" in result.message


def test_a_bad_machine_combination_fails_before_any_vertex_call(vertex_url: str) -> None:
    """A machine that can't take the accelerator fails with the machines that can."""
    world = make_world(vertex_url)
    registered(world, "machines")
    body = make_command(
        "deploy", model="machines", accelerator="NVIDIA_L4", machine_type="n1-standard-4"
    )
    result = on_message(message(body), world.ctx, datetime.now(UTC))
    assert result is not None and result.status is Status.FAILED
    assert "g2-standard-12" in " ".join(result.reasons)
    assert world.ctx.vertex.endpoint("machines") is None


def test_old_commands_are_dropped_with_a_result(vertex_url: str) -> None:
    """A command published longer ago than the maximum age gets `dropped` and does nothing."""
    world = make_world(vertex_url, max_event_age="1h")
    registered(world, "too-late")
    result = on_message(
        message(deploy("too-late"), datetime.now(UTC) - timedelta(hours=2)),
        world.ctx,
        datetime.now(UTC),
    )
    assert result is not None and result.status is Status.DROPPED
    assert world.ctx.vertex.endpoint("too-late") is None


def test_a_register_command_registers_a_folder_whose_events_were_lost(vertex_url: str) -> None:
    """`register` names a complete folder explicitly; it ends `registered` as a command result, once."""
    world = make_world(vertex_url)
    for name, data in sound_files().items():
        world.put("explicit", "v1", name, data)
    body = make_command("register", model="explicit", version="v1")
    result = on_message(message(body), world.ctx, datetime.now(UTC))
    assert result is not None and (result.status, result.kind, result.action) == (
        Status.REGISTERED,
        "command",
        "register",
    )
    assert on_message(message(body), world.ctx, datetime.now(UTC)) is None
    assert world.ctx.vertex.model_version("explicit", "latest") is not None
