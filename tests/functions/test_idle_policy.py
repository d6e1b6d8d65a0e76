"""idle_policy scale-to-zero over the wire (v1beta1 deploys, the sweep leaving them be, the states
`status` shows), and the pure rules of both idle policies."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from functions.test_sweeper import registered, send, terminal
from functions.world import World, make_world
from support.builders import make_command

from local.processes import stop
from local.vertex.testing import Running, launch
from modeldrop.cli.profile import Profile
from modeldrop.cli.serve import call_predict, predict_request, stream_chat
from modeldrop.commands import parse_command
from modeldrop.errors import PermanentError
from modeldrop.gateway import Gateway, Hold
from modeldrop.gateway_rules import Phase
from modeldrop.idle_policy import (
    Wakefulness,
    expiry_warnings,
    scale_to_zero_period,
    wakefulness,
)
from modeldrop.prediction import Answer
from modeldrop.records import OperationRecord, Teardown
from modeldrop.resources import Deployment, Endpoint
from modeldrop.results import Status
from modeldrop.sweeper import sweep

PRESETS = {"legacy": [], "faithful": ["--fidelity", "faithful", "--time-scale", "0.01"]}
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=sorted(PRESETS))
def preset(
    request: pytest.FixtureRequest, tmp_path: Path, gcs_host: str
) -> Iterator[tuple[str, Running]]:
    """A Vertex emulator of each preset (faithful at 0.01: 300 s periods are 3 s, a CPU deploy 6 s)."""
    running = launch(tmp_path, *PRESETS[request.param])
    try:
        yield request.param, running
    finally:
        stop(running.child)


def zero_deploy(model: str, **overrides: Any) -> dict[str, Any]:
    body = make_command(
        "deploy", model=model, machine_type="n1-standard-4", idle_policy="scale-to-zero"
    )
    return {**body, "accelerator": None, **overrides}


def beta_endpoint(world: World, endpoint: str) -> Any:
    """The endpoint as v1beta1 reads it (v1 has no scale-to-zero fields)."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1beta1 as v1beta1

    client = v1beta1.EndpointServiceClient(
        client_options=ClientOptions(api_endpoint=world.settings.vertex_api_endpoint),
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )
    location = f"projects/{world.settings.project}/locations/{world.settings.region}"
    return client.get_endpoint(name=f"{location}/endpoints/{endpoint}")


def state(world: World, endpoint: str) -> Wakefulness:
    """What `modeldrop status` derives for the endpoint."""
    return wakefulness(
        world.ctx.vertex.endpoint(endpoint),
        world.ctx.state.teardown(endpoint),
        world.ctx.state.operations(endpoint),
    )


def predict_status(world: World, endpoint: str, shared_host: bool = False) -> int:
    """A :predict straight to Vertex, on the endpoint's dedicated DNS (the emulator plays it by the
    Host header) as a client must send it, or on the shared host, which refuses a dedicated one."""
    location = f"projects/{world.settings.project}/locations/{world.settings.region}"
    url = f"{world.settings.vertex_api_endpoint}/v1/{location}/endpoints/{endpoint}:predict"
    found = world.ctx.vertex.endpoint(endpoint)
    assert found is not None and found.dedicated_dns
    headers = {} if shared_host else {"host": found.dedicated_dns}
    body = {"instances": [{"prompt": "hi"}]}
    return httpx.post(url, json=body, headers=headers, timeout=30).status_code


def through_gateway(world: World, endpoint: str) -> tuple[int, list[Phase]]:
    """A chat through the gateway (in process, the real adapters): its status and the phases it
    was held in; held retries are paced at 0.2 s instead of the 0.5-10 s backoff."""
    gw = Gateway(world.ctx, sleep=lambda s: time.sleep(min(s, 0.2)))
    body = {"model": endpoint, "messages": [{"role": "user", "content": "hi"}]}
    events = list(gw.events(endpoint, "rawPredict", lambda seen: json.dumps(body).encode()))
    last = events[-1]
    assert isinstance(last, Answer), last
    return last.status, [e.phase for e in events if isinstance(e, Hold)]


def profile_of(world: World) -> Profile:
    """A local profile on this world's emulator, for `modeldrop predict` and `chat` direct."""
    s = world.settings
    return Profile(
        name="local",
        project=s.project,
        region=s.region,
        weights_bucket=s.weights_bucket,
        state_bucket=s.state_bucket,
        commands_topic=s.commands_topic,
        results_topic=s.results_topic,
        vertex_api_endpoint=s.vertex_api_endpoint,
        emulator_env=(("PUBSUB_EMULATOR_HOST", "unused"),),
    )


def until(check: Any, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert check()


@pytest.mark.stack
def test_scale_to_zero_deploys_through_v1beta1_and_the_sweep_leaves_it(
    preset: tuple[str, Running],
) -> None:
    """idle_policy scale-to-zero with a 60 s TTL deploys on a dedicated endpoint with minReplicaCount 0, initialReplicaCount 1 and 300 s periods, saying the TTL was clamped; the sweep never tears it down; the shared host refuses its predictions; under faithful it goes asleep, a prediction wakes it (429 meanwhile) and the gateway, on its dedicated DNS, holds a chat until it is ready again; `modeldrop predict` and `chat` reach it on its DNS."""
    name, vertex = preset
    world = make_world(vertex.url)
    registered(world, "zeroing")
    command = zero_deploy("zeroing", idle_ttl="60s")
    accepted = send(world, command)
    clamp = "idle_ttl 60 s is outside Vertex's scale-to-zero range (5 min to 8 h): clamped to its minimum of 5 min, 300 s"
    assert accepted is not None and accepted.status is Status.ACCEPTED
    assert clamp in accepted.message
    ready = terminal(world, command["request_id"], timeout_s=60)
    assert ready.status is Status.READY and clamp in ready.message
    seen = beta_endpoint(world, "zeroing")
    assert seen.dedicated_endpoint_enabled
    [deployed] = seen.deployed_models
    resources = deployed.dedicated_resources
    assert resources.min_replica_count == 0 and resources.initial_replica_count == 1
    assert resources.scale_to_zero_spec.idle_scaledown_period.total_seconds() == 300
    assert resources.scale_to_zero_spec.min_scaleup_period.total_seconds() == 300
    summary = sweep(world.ctx, datetime.now(UTC) + timedelta(hours=10))
    assert summary.torn_down == []
    endpoint = world.ctx.vertex.endpoint("zeroing")
    assert endpoint is not None and [d.scales_to_zero for d in endpoint.deployments] == [True]
    assert endpoint.dedicated and endpoint.dedicated_dns == seen.dedicated_endpoint_dns
    assert predict_status(world, "zeroing", shared_host=True) == 400  # dedicated: its DNS only
    if name == "legacy":
        assert state(world, "zeroing") is Wakefulness.READY  # 300 s real periods: still up
        assert through_gateway(world, "zeroing") == (200, [])
    else:
        until(lambda: state(world, "zeroing") is Wakefulness.ASLEEP)
        assert predict_status(world, "zeroing") == 429
        assert state(world, "zeroing") is Wakefulness.WAKING
        # The gateway sends to the dedicated DNS, holds through scale-to-zero's 429s, then answers.
        status, held = through_gateway(world, "zeroing")
        assert status == 200 and held and set(held) == {Phase.SCALING_UP}
        assert state(world, "zeroing") is Wakefulness.READY
    # `modeldrop predict` and `chat` direct: one GetEndpoint, then the dedicated DNS.
    profile = profile_of(world)
    body = predict_request(["hi"], max_tokens=8, temperature=None)
    assert call_predict(profile, "zeroing", body)["predictions"]
    chat = stream_chat(profile, "zeroing", [{"role": "user", "content": "hi"}], 8, None)
    assert "".join(chat).startswith("echo from")


@pytest.mark.stack
def test_what_vertex_would_refuse_is_refused_up_front(preset: tuple[str, Running]) -> None:
    """Scale-to-zero onto an endpoint that isn't dedicated, or a teardown deploy beside a scale-to-zero one, ends failed at once naming why; nothing is deployed."""
    world = make_world(preset[1].url)
    registered(world, "plain")
    first = {
        **make_command("deploy", model="plain", machine_type="n1-standard-4"),
        "accelerator": None,
    }
    assert send(world, first) is not None
    assert terminal(world, first["request_id"], timeout_s=60).status is Status.READY
    onto_plain = zero_deploy("plain", endpoint="plain", version="v1", traffic_percent=100)
    onto_plain["request_id"] = "zero-onto-plain"
    # The same model version already serves there with the other policy: refused, not "ready".
    refused = send(world, onto_plain)
    assert refused is not None and refused.status is Status.FAILED
    assert "idle policy teardown" in refused.message
    registered(world, "other")
    other = zero_deploy("other", endpoint="plain")
    refused = send(world, other)
    assert refused is not None and refused.status is Status.FAILED
    assert "not a dedicated endpoint" in refused.message
    registered(world, "alone")
    alone = zero_deploy("alone")
    assert send(world, alone) is not None
    assert terminal(world, alone["request_id"], timeout_s=60).status is Status.READY
    beside = {
        **make_command("deploy", model="plain", endpoint="alone", machine_type="n1-standard-4"),
        "accelerator": None,
    }
    refused = send(world, beside)
    assert refused is not None and refused.status is Status.FAILED
    assert "must be the only model on its endpoint" in refused.message
    endpoint = world.ctx.vertex.endpoint("alone")
    assert endpoint is not None and len(endpoint.deployments) == 1


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"keep_warm": True}, "contradict"),
        ({"idle_ttl": 0}, "idle_ttl 0"),
        ({"traffic_percent": 50}, "traffic_percent must be 100"),
    ],
)
def test_scale_to_zero_commands_vertex_cant_serve_are_refused(
    body: dict[str, Any], why: str
) -> None:
    """keep_warm, a TTL of 0 or a partial traffic share can't go with scale-to-zero: the command is refused, naming it."""
    with pytest.raises(PermanentError) as error:
        parse_command({**zero_deploy("m"), **body})
    assert why in " ".join(error.value.reasons)


def test_placements_are_refused_beside_a_single_machine_and_when_repeated() -> None:
    """placements replace machine_type/accelerator/accelerator_count (both refused) and may not repeat one."""
    l4 = {"accelerator": "NVIDIA_L4"}
    with pytest.raises(PermanentError, match="invalid command") as both:
        parse_command(make_command("deploy", placements=[l4], accelerator="NVIDIA_L4"))
    assert "not both" in " ".join(both.value.reasons)
    with pytest.raises(PermanentError) as repeated:
        parse_command(make_command("deploy", placements=[l4, l4]))
    assert "placement 2 repeats placement 1" in " ".join(repeated.value.reasons)
    with pytest.raises(PermanentError) as unknown:
        parse_command(make_command("deploy", placements=[{**l4, "region": "us-east1"}]))
    assert "region" in " ".join(unknown.value.reasons)  # regions are not placements: refused


def test_the_ttl_is_clamped_to_vertexs_range_and_said() -> None:
    """Below 5 min or above 8 h the period is clamped and the message says which bound; within, nothing is said."""
    assert scale_to_zero_period(1800) == (1800, "")
    assert scale_to_zero_period(60)[0] == 300 and "minimum of 5 min" in scale_to_zero_period(60)[1]
    assert scale_to_zero_period(86400)[0] == 28800
    assert "maximum of 8 h" in scale_to_zero_period(86400)[1]


def deployment(**overrides: Any) -> Deployment:
    fields: dict[str, Any] = {
        "id": "1",
        "model": "m",
        "version": "v1",
        "model_resource": "r",
        "model_version_id": "1",
        "create_time": NOW,
        "machine_type": "n1-standard-4",
        "accelerator_type": None,
        "accelerator_count": 0,
        "min_replicas": 1,
        "max_replicas": 1,
        "available_replicas": 1,
    }
    return Deployment(**{**fields, **overrides})


def endpoint_of(*deployments: Deployment) -> Endpoint:
    return Endpoint("e", "projects/p/locations/l/endpoints/e", {}, deployments, {})


def test_status_states_for_both_policies() -> None:
    """Teardown: a torn-down endpoint is asleep, a wake in flight waking, a served one ready, nothing down; scale-to-zero: at zero asleep, scaling up waking, a replica up ready."""
    torn = Teardown(endpoint="e", at=NOW, deployments=[{"model": "m"}])
    waking = OperationRecord(request_id="w", action="wake", endpoint="e", started_at=NOW)
    assert wakefulness(endpoint_of(), torn, []) is Wakefulness.ASLEEP
    assert wakefulness(endpoint_of(), torn, [waking]) is Wakefulness.WAKING
    assert wakefulness(endpoint_of(deployment()), None, []) is Wakefulness.READY
    assert wakefulness(endpoint_of(), None, []) is Wakefulness.DOWN
    zero = deployment(min_replicas=0, available_replicas=0, status_message="Scaled to zero.")
    up = deployment(min_replicas=0, available_replicas=0, status_message="Scaling up from zero.")
    assert wakefulness(endpoint_of(zero), None, []) is Wakefulness.ASLEEP
    assert wakefulness(endpoint_of(up), None, []) is Wakefulness.WAKING
    assert wakefulness(endpoint_of(deployment(min_replicas=0)), None, []) is Wakefulness.READY


def test_the_sweep_warns_before_vertexs_30_day_auto_undeploy() -> None:
    """A scale-to-zero deployment at zero for 28 days is warned of (about 2 days left); one at zero for a day, or one up, is not."""
    old = deployment(min_replicas=0, available_replicas=0, status_time=NOW - timedelta(days=28))
    fresh = deployment(min_replicas=0, available_replicas=0, status_time=NOW - timedelta(days=1))
    up = deployment(min_replicas=0, status_time=NOW - timedelta(days=40))
    [warning] = expiry_warnings([endpoint_of(old), endpoint_of(fresh), endpoint_of(up)], NOW)
    assert "30 days" in warning and "about 2 day(s)" in warning
