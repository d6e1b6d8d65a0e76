"""The container end to end on the real CPU engine and the tiny model: one server for the whole module."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from local.processes import stop

pytestmark = pytest.mark.engine

PREDICT = "/v1/endpoints/123/deployedModels/456:predict"
HEALTH = "/v1/endpoints/123/deployedModels/456"
MAX_MODEL_LEN = 512
STATE = Path(tempfile.mkdtemp(prefix="modeldrop-state-"))


@pytest.fixture(scope="module")
def server(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory, launch: Callable[..., Any]
) -> Iterator[Any]:
    env = {
        "AIP_PREDICT_ROUTE": PREDICT,
        "AIP_HEALTH_ROUTE": HEALTH,
        "AIP_DEPLOYED_MODEL_ID": "456",
        "AIP_ENDPOINT_ID": "123",
        "AIP_STORAGE_URI": str(tiny_model),
        "MODELDROP_SERVING_MAX_MODEL_LEN": str(MAX_MODEL_LEN),
        "MODELDROP_SERVING_MAX_INSTANCES": "8",
        "MODELDROP_SERVING_MAX_BODY_BYTES": "65536",
        "MODELDROP_SERVING_MAX_NUM_SEQS": "64",
        "MODELDROP_STATE_BUCKET": str(STATE),
        "MODELDROP_ACTIVITY_PERIOD": "1",
        "MODELDROP_REPLICA_ID": "replica-0",
    }
    log = tmp_path_factory.mktemp("serving") / "serving.log"
    running = launch(["--served-model-name", "tiny"], log, env=env, health_route=HEALTH)
    try:
        yield running
    finally:
        stop(running.child, grace_s=30)


@pytest.fixture(scope="module")
def http(server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_health_answers_503_while_loading_then_200(server: Any, http: httpx.Client) -> None:
    """Health is served at AIP_HEALTH_ROUTE at once: 503 while the engine loads, then 200."""
    assert server.seen_health[0] == 503
    assert server.seen_health[-1] == 200
    response = http.get(HEALTH)
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_predict_returns_predictions_in_instance_order(http: httpx.Client) -> None:
    """The Vertex envelope's instances (string, prompt, messages) come back as predictions in order."""
    body = {
        "instances": [
            "the model",
            {"prompt": "the model serves tokens to people in the city"},
            {"messages": [{"role": "user", "content": "hi"}]},
        ],
        "parameters": {"max_tokens": 5, "temperature": 0, "ignore_eos": True},
    }
    response = http.post(PREDICT, json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["deployedModelId"] == "456"
    predictions = result["predictions"]
    assert len(predictions) == 3
    prompt_tokens = [p["usage"]["prompt_tokens"] for p in predictions]
    assert prompt_tokens[0] < prompt_tokens[1]
    assert all(p["usage"]["completion_tokens"] == 5 for p in predictions)
    assert all(p["choices"][0]["finish_reason"] == "length" for p in predictions)
    alone = http.post(PREDICT, json={**body, "instances": [body["instances"][1]]}).json()
    assert alone["predictions"][0]["choices"] == predictions[1]["choices"]


def test_predict_route_takes_raw_openai_bodies(http: httpx.Client) -> None:
    """rawPredict bodies on the predict route: a chat completion, a completion, and a stream."""
    chat = http.post(
        PREDICT,
        json={
            "@requestFormat": "chatCompletions",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 3,
        },
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["object"] == "chat.completion"
    completion = http.post(PREDICT, json={"prompt": "the city", "max_tokens": 3})
    assert completion.json()["object"] == "text_completion"
    with http.stream(
        "POST", PREDICT, json={"prompt": "the city", "max_tokens": 4, "stream": True}
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = [line for line in stream.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "length"


def test_openai_client_completion(client: openai.OpenAI) -> None:
    """The official openai client gets a completion with usage from /v1/completions."""
    result = client.completions.create(
        model="tiny", prompt="the model", max_tokens=6, extra_body={"ignore_eos": True}
    )
    assert result.object == "text_completion"
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None and result.usage.completion_tokens == 6


def test_openai_client_chat_and_n(client: openai.OpenAI) -> None:
    """Chat completions through the openai client, with n=2 choices."""
    result = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        max_tokens=4,
        n=2,
        temperature=1.0,
    )
    assert [c.index for c in result.choices] == [0, 1]
    assert all(c.message.role == "assistant" for c in result.choices)
    assert result.usage is not None and result.usage.prompt_tokens > 5


def test_openai_client_streams_chat(client: openai.OpenAI) -> None:
    """A streamed chat arrives as chunks: the role first, text deltas, a finish reason, then usage."""
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    """/v1/models lists the one served model by its served name."""
    assert [m.id for m in client.models.list()] == ["tiny"]


def test_concurrent_requests_run_together(server: Any) -> None:
    """32 concurrent streams all succeed and the engine batches them: at some moment several
    streams are between their first and last token. A server taking requests one at a time has
    at most one stream there at any moment, however fast or slow the machine is."""

    async def scenario() -> list[tuple[int, float, float]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as ac:

            async def one(i: int) -> tuple[int, float, float]:
                body = {"prompt": f"request {i} the model", "max_tokens": 256, "ignore_eos": True}
                first = 0.0
                async with ac.stream("POST", "/v1/completions", json={**body, "stream": True}) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: {") and not first:
                            first = time.monotonic()
                    return r.status_code, first, time.monotonic()

            return list(await asyncio.gather(*(one(i) for i in range(32))))

    streams = asyncio.run(asyncio.wait_for(scenario(), timeout=120))
    assert [status for status, _, _ in streams] == [200] * 32
    assert all(first for _, first, _ in streams), "a stream ended without a token"
    # The most streams generating at once: at each stream's first token, those begun and not ended.
    overlap = max(
        sum(1 for _, first, end in streams if first <= moment < end) for _, moment, _ in streams
    )
    assert overlap >= 4, f"at most {overlap} streams were generating at once"
    metrics = httpx.get(server.url + "/metrics", timeout=30).text
    assert re.search(r"^vllm:num_requests_running\{", metrics, re.M)  # vLLM's gauge is served


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        (PREDICT, {"instances": ["a"] * 9}, 400, "at most 8"),
        (PREDICT, {"instances": ["a"], "parameters": {"max_tokens": 600}}, 400, "max_tokens"),
        (PREDICT, {"instances": ["a"], "parameters": {"stream": True}}, 400, "stream"),
        (PREDICT, {"instances": ["a"], "parameters": {"bogus": 1}}, 400, "bogus"),
        (PREDICT, {"instances": [{"prompt": 7}]}, 400, "instances"),
        (PREDICT, {"instances": []}, 400, "instances"),
        (PREDICT, {"instances": ["a"], "extra": 1}, 400, "extra"),
        (PREDICT, {"hello": "world"}, 400, '"instances"'),
        (PREDICT, {"prompt": "hi", "bogus": 1}, 400, "bogus"),
        ("/v1/completions", {"prompt": "the " * 600}, 400, "maximum context length"),
        ("/v1/completions", {"prompt": "the model", "max_tokens": 600}, 400, "max_tokens"),
        ("/v1/completions", {"prompt": "hi", "max_tokens": "ten"}, 400, "max_tokens"),
        ("/v1/completions", {"prompt": "hi", "temperature": -1}, 400, "temperature"),
        ("/v1/completions", {"prompt": ""}, 400, "prompt"),
        ("/v1/completions", {"prompt": "hi", "bogus": 1}, 400, "bogus"),
        ("/v1/completions", {"prompt": "hi", "model": "other"}, 404, "does not exist"),
        ("/v1/chat/completions", {"messages": "hi"}, 400, "messages"),
    ],
)
def test_bad_input_gets_a_clear_4xx(
    http: httpx.Client, path: str, body: dict[str, object], status: int, needle: str
) -> None:
    """Out-of-limit, malformed or unknown-field bodies get vLLM's 4xx error shape naming the problem."""
    response = http.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle in error["message"] or needle in str(error["param"]), error
    assert error["code"] == status


def test_malformed_json_and_oversized_bodies_are_refused(http: httpx.Client) -> None:
    """Broken JSON, a JSON array and thousands of nesting levels get 400 on every route; too big gets 413."""
    for path in (PREDICT, "/v1/completions", "/v1/chat/completions", "/tokenize"):
        deep = http.post(
            path,
            content=b'{"prompt": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            headers={"content-type": "application/json"},
        )
        assert deep.status_code == 400 and "levels deep" in deep.json()["error"]["message"]
    broken = http.post(
        PREDICT, content=b'{"instances": [', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
    array = http.post(PREDICT, json=[1, 2])
    assert array.status_code == 400 and "JSON object" in array.json()["error"]["message"]
    big = http.post(PREDICT, json={"instances": ["x" * 70_000]})
    assert big.status_code == 413
    chunked = http.post(PREDICT, content=iter([b'{"instances": ["', b"x" * 70_000, b'"]}']))
    assert chunked.status_code == 413
    healthy = http.post(
        PREDICT, json={"instances": ["still serving"], "parameters": {"max_tokens": 2}}
    )
    assert healthy.status_code == 200


def test_every_response_and_log_line_carries_the_request_id(
    server: Any, http: httpx.Client
) -> None:
    """A given X-Request-Id is echoed and appears on the JSON log line; others get a fresh one."""
    given = http.post(
        "/v1/completions",
        json={"prompt": "hi", "max_tokens": 2},
        headers={"X-Request-Id": "trace-42"},
    )
    assert given.headers["x-request-id"] == "trace-42"
    fresh = http.get("/v1/models")
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in server.log().splitlines() if "trace-42" in line]
        if lines:
            break
        time.sleep(0.1)
    assert lines and lines[0]["request_id"] == "trace-42"
    assert lines[0]["severity"] == "INFO"
    assert lines[0]["httpRequest"]["status"] == 200


def test_metrics_expose_http_and_engine_metrics(http: httpx.Client) -> None:
    """/metrics has our request counters and token counts next to vLLM's engine gauges."""
    assert http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2}).status_code == 200
    text = http.get("/metrics").text
    assert re.search(
        r'^modeldrop_serving_requests_total\{route="/v1/completions",status="200"\} [1-9]',
        text,
        re.M,
    )
    assert re.search(r"^vllm:generation_tokens_total\{[^}]*\} [1-9]", text, re.M)
    assert "modeldrop_serving_request_duration_seconds_bucket" in text
    assert re.search(r"^vllm:num_requests_running\{", text, re.M)
    assert re.search(r"^vllm:num_requests_waiting\{", text, re.M)


def test_a_client_that_disconnects_stops_its_generation(server: Any, http: httpx.Client) -> None:
    """A non-streaming client that gives up is answered 499 in the metrics: its generation was cancelled."""
    # 16 prompts x 4 choices x 480 tokens: seconds of work on the CPU engine, far past the timeout.
    body = {"prompt": ["the model"] * 16, "n": 4, "max_tokens": 480, "ignore_eos": True}
    try:
        answered = httpx.post(server.url + "/v1/completions", json=body, timeout=0.2)
    except httpx.TimeoutException:
        pass
    else:
        pytest.fail(f"answered within 0.2 s: {answered.status_code} {answered.text[:300]}")
    pattern = r'^modeldrop_serving_requests_total\{route="/v1/completions",status="499"\} ([0-9.]+)'
    deadline = time.monotonic() + 10
    found: list[str] = []
    while time.monotonic() < deadline and not found:
        found = re.findall(pattern, http.get("/metrics").text, re.M)
        time.sleep(0.1)
    assert found and float(found[0]) >= 1
    assert http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2}).status_code == 200


def test_a_stream_cut_by_the_client_is_logged_499(server: Any) -> None:
    """A streaming client that leaves mid-stream is logged (and counted) 499, as a non-streamed one is."""
    # Far more than a socket's buffers hold (16 x 4 x 480 chunks), so the stream cannot have been
    # written out whole before the client leaves, however slowly the client reads on a loaded machine.
    body = {
        "prompt": ["the model"] * 16,
        "n": 4,
        "max_tokens": 480,
        "ignore_eos": True,
        "stream": True,
    }
    headers = {"X-Request-Id": "cut-stream-1"}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        with http.stream("POST", "/v1/completions", json=body, headers=headers) as stream:
            next(line for line in stream.iter_lines() if line.startswith("data: "))
    deadline = time.monotonic() + 15
    statuses: list[int] = []
    while time.monotonic() < deadline and not statuses:
        statuses = [
            json.loads(line)["httpRequest"]["status"]
            for line in server.log().splitlines()
            if "cut-stream-1" in line and "httpRequest" in line
        ]
        time.sleep(0.1)
    assert statuses == [499]


def test_activity_records_count_every_route(http: httpx.Client) -> None:
    """The replica's activity record (a local folder as the bucket) counts requests and ends with none in flight."""
    path = STATE / "activity" / "123" / "456" / "replica-0.json"
    before = json.loads(path.read_text())
    assert (
        http.post(PREDICT, json={"instances": ["x"], "parameters": {"max_tokens": 1}}).status_code
        == 200
    )
    deadline = time.monotonic() + 10
    record = before
    while time.monotonic() < deadline and record["requests"] <= before["requests"]:
        time.sleep(0.2)
        record = json.loads(path.read_text())
    assert record["requests"] > before["requests"]
    assert record["in_flight"] == 0
    assert (record["endpoint_id"], record["deployed_model_id"], record["replica"]) == (
        "123",
        "456",
        "replica-0",
    )
    assert record["last_request_at"].endswith("Z") and record["written_at"] >= record["started_at"]


def test_health_turns_503_when_the_engine_dies(server: Any, http: httpx.Client) -> None:
    """Killing the engine process makes health answer 503 and generation requests 503 (runs last)."""
    engine_pids = _engine_core_pids(server.child.pid)
    assert engine_pids, "no EngineCore child found"
    for pid in engine_pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    status = 200
    while time.monotonic() < deadline and status == 200:
        http.post(PREDICT, json={"instances": ["x"], "parameters": {"max_tokens": 1}})
        status = http.get(HEALTH).status_code
        time.sleep(0.2)
    assert status == 503
    assert http.post("/v1/completions", json={"prompt": "hi"}).status_code == 503


def _engine_core_pids(root: int) -> list[int]:
    found: list[int] = []
    pending = [root]
    while pending:
        pid = pending.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            children = (task / "children").read_text().split()
            pending.extend(int(c) for c in children)
            for child in children:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                if b"EngineCore" in cmdline:
                    found.append(int(child))
    return found
