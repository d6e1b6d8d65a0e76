"""The gateway through the real local stack: faithful emulator at time scale 0.01, echo deployments,
the Pub/Sub emulator, the sweep tearing an endpoint down and the gateway waking it."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local.bench_gateway import burst, mix
from local.gateway_rig import MODEL, CommandTap, Rig, start_rig, stop_rig
from local.processes import free_port, start, stop, wait_http

ENDPOINT = "gw-e2e"
pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """The stack, with ENDPOINT deployed (idle TTL 6 s, so the sweep soon tears it down)."""
    running = start_rig(tmp_path_factory.mktemp("gateway"), time_scale=0.01)
    try:
        running.deploy_echo(ENDPOINT, idle_ttl="6s")
        yield running
    finally:
        stop_rig(running)


def test_requests_to_a_sleeping_endpoint_wake_it_once_and_are_all_answered(rig: Rig) -> None:
    """Torn down by the sweep; 24 requests (8 streaming) at once: one wake, 24 answers, streams kept alive."""
    rig.wait_asleep(ENDPOINT)
    tap = CommandTap(rig)
    outcomes = asyncio.run(burst(rig.gateway, ENDPOINT, mix(24, 8), timeout_s=180))
    wakes = [c for c in tap.drain() if c.get("action") == "wake"]
    assert [o.error for o in outcomes if not o.answered] == []
    assert len(wakes) == 1, wakes
    assert wakes[0]["request_id"].startswith("gateway-wake-gw-e2e-")
    streams = [o for o in outcomes if o.kind == "stream"]
    assert len(streams) == 8 and all(o.keepalives >= 1 and o.data_events >= 3 for o in streams)


def test_a_ready_endpoint_is_proxied_streams_chunk_by_chunk(rig: Rig) -> None:
    """Awake: chat, completion, streamed chat and Vertex predict go through with Vertex's answers,
    and `modeldrop chat/predict --via-gateway` too."""
    gw = rig.gateway
    messages = [{"role": "user", "content": "hi"}]
    chat = httpx.post(f"{gw}/v1/chat/completions", json={"model": ENDPOINT, "messages": messages})
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["message"]["content"].startswith("echo from")
    done = httpx.post(f"{gw}/v1/completions", json={"model": ENDPOINT, "prompt": "hi"})
    assert done.status_code == 200 and done.json()["object"] == "text_completion"
    body = {"model": ENDPOINT, "messages": messages, "stream": True}
    with httpx.stream("POST", f"{gw}/v1/chat/completions", json=body, timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = [line for line in stream.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) == 4
    assert all(not line.startswith(":") for line in events)  # ready: no keep-alives
    predict = httpx.post(
        f"{gw}/v1/endpoints/{ENDPOINT}:predict", json={"instances": [{"prompt": "hi"}]}
    )
    assert predict.status_code == 200 and predict.json()["predictions"][0]["echo"]
    assert rig.cli("chat", ENDPOINT, "hi", "--via-gateway").stdout.startswith("echo from")
    assert '"echo"' in rig.cli("predict", ENDPOINT, "hi", "--via-gateway").stdout
    models = httpx.get(f"{gw}/v1/models").json()["data"]
    assert {"id": ENDPOINT, "state": "ready"}.items() <= next(
        m for m in models if m["id"] == ENDPOINT
    ).items()


def test_requests_during_a_users_own_deploy_are_held_until_it_serves(rig: Rig) -> None:
    """`modeldrop deploy --no-wait` on a new endpoint (its deploy slowed by 4 s): requests through
    the gateway meanwhile are held (no 409, no wake of the gateway's own) and answered once it serves."""
    tap = CommandTap(rig)
    rig.set_deploy_delay(4.0)
    try:
        rig.cli(
            "deploy", MODEL, "--endpoint", "gw-user", "--accelerator", "none",
            "--idle-ttl", "30m", "--no-wait",
        )  # fmt: skip
        for _ in range(300):  # until on_command has made the endpoint and started the deploy
            if httpx.get(rig.endpoint_url("gw-user"), timeout=30).status_code == 200:
                break
            time.sleep(0.1)
        assert rig.deployed("gw-user") == []
        outcomes = asyncio.run(burst(rig.gateway, "gw-user", mix(6, 2), timeout_s=120))
    finally:
        rig.set_deploy_delay(0.0)
    assert [o.error for o in outcomes if not o.answered] == []
    assert [c for c in tap.drain() if c.get("action") == "wake"] == []
    streams = [o for o in outcomes if o.kind == "stream"]
    assert all(o.keepalives >= 1 for o in streams)


def test_unknown_empty_and_malformed_requests_are_refused_clearly(rig: Rig) -> None:
    """404 unknown endpoint, 409 nothing to wake (with the reason), 400 bad bodies, 405 method."""
    gw = rig.gateway
    messages = [{"role": "user", "content": "hi"}]
    unknown = httpx.post(f"{gw}/v1/chat/completions", json={"model": "nope", "messages": messages})
    assert unknown.status_code == 404 and unknown.json()["error"]["state"] == "unknown"
    rig.empty_endpoint("gw-empty")
    empty = httpx.post(f"{gw}/v1/completions", json={"model": "gw-empty", "prompt": "hi"})
    assert empty.status_code == 409
    assert "nothing was torn down" in empty.json()["error"]["message"]
    for body in ({"model": ENDPOINT}, {"model": ENDPOINT, "messages": messages, "stream": "yes"}):
        bad = httpx.post(f"{gw}/v1/chat/completions", json=body)
        assert bad.status_code == 400, bad.text
    mixed = {"model": ENDPOINT, "prompt": "hi", "messages": messages}
    assert httpx.post(f"{gw}/v1/completions", json=mixed).status_code == 400
    assert httpx.post(f"{gw}/v1/endpoints/{ENDPOINT}:predict", json={}).status_code == 400
    assert httpx.get(f"{gw}/v1/chat/completions").status_code == 405


def test_past_the_wake_timeout_a_held_request_gets_503_with_retry_after(
    rig: Rig, tmp_path: Path
) -> None:
    """A gateway with a 1 s wake timeout (the wake takes ~6 s): 503, Retry-After, the state in JSON."""
    port = free_port()
    argv = [sys.executable, "-m", "functions_framework", "--source", "functions/main.py"]
    argv += ["--target", "gateway", "--signature-type", "http", "--host", "127.0.0.1"]
    argv += ["--port", str(port)]
    env = {**rig.state.env, "MODELDROP_WAKE_TIMEOUT": "1s", "THREADS": "8"}
    repo = Path(__file__).resolve().parents[2]
    child = start("gateway-short", argv, tmp_path / "gateway-short.log", env=env, cwd=repo)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/v1/models", child, timeout_s=60)
        rig.wait_asleep(ENDPOINT)
        answer = httpx.post(
            f"{url}/v1/completions", json={"model": ENDPOINT, "prompt": "hi"}, timeout=30
        )
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["retry-after"]) >= 1
        error = json.loads(answer.text)["error"]
        assert error["state"] in ("asleep", "waking") and error["endpoint"] == ENDPOINT
    finally:
        stop(child)
