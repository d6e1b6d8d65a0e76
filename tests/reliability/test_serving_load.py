"""The serving container on the tiny model, deployed by the Vertex emulator: load with malformed requests, then the engine killed under load."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from reliability.figures import Figures

from local.processes import stop
from local.tiny_model import build_tiny_model
from local.vertex.testing import PARENT, V1, Running, launch

pytestmark = [pytest.mark.engine, pytest.mark.stack, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
IMAGE = "us-docker.pkg.dev/modeldrop-test/modeldrop/serving:test"
REQUESTS, CONCURRENCY, MALFORMED_EVERY = 1000, 128, 10
SERVING_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "PYTHONPATH": str(REPO),
    "MODELDROP_SERVING_MAX_MODEL_LEN": "512",
    "MODELDROP_SERVING_MAX_BODY_BYTES": "65536",
    "MODELDROP_SERVING_MAX_NUM_SEQS": "128",
}
# Malformed in ten ways; each must get a 4xx, never a 5xx or a dropped connection.
MALFORMED: list[tuple[str, bytes]] = [
    ("broken-json", b'{"instances": ['),
    ("json-array", b"[1, 2]"),
    ("instances-not-list", b'{"instances": "hi"}'),
    ("no-instances", b'{"parameters": {"max_tokens": 4}}'),
    ("max-tokens-negative", b'{"instances": ["hi"], "parameters": {"max_tokens": -1}}'),
    ("max-tokens-huge", b'{"instances": ["hi"], "parameters": {"max_tokens": 100000}}'),
    ("temperature-string", b'{"instances": ["hi"], "parameters": {"temperature": "hot"}}'),
    ("oversized", b'{"instances": ["' + b"x" * 70_000 + b'"]}'),
    ("not-utf8", b'{"instances": ["\xff\xfe"]}'),
    ("empty", b""),
]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, dict[str, Any]]]:
    """The tiny model deployed through the emulator as `python -m serving`; the emulator and the deployment's process."""
    tmp = tmp_path_factory.mktemp("serving-load")
    model_dir = build_tiny_model(tmp / "tiny", seed=0)
    env_args = [a for k, v in SERVING_ENV.items() for a in ("--deployment-env", f"{k}={v}")]
    vertex = launch(tmp, "--deploy-timeout", "300", "--health-interval", "0.5", *env_args)
    try:
        spec = {
            "imageUri": IMAGE,
            # Eager: the contract under load, not the kernels (tests/serving/conftest.start_server).
            "args": ["--model", str(model_dir), "--served-model-name", "tiny", "--enforce-eager"],
        }
        model = {"displayName": "tiny", "containerSpec": spec}
        vertex.call("POST", f"{V1}/models:upload", json={"modelId": "tiny", "model": model})
        vertex.call(
            "POST", f"{V1}/endpoints", params={"endpointId": "tiny"}, json={"displayName": "tiny"}
        )
        operation = vertex.wait_operation(
            vertex.start_deploy(f"{PARENT}/models/tiny", f"{PARENT}/endpoints/tiny"), timeout_s=300
        )
        assert "error" not in operation, operation
        dm_id = operation["response"]["deployedModel"]["id"]
        yield vertex, vertex.process(dm_id)
    finally:
        stop(vertex.child, grace_s=30)


def good_body(n: int) -> tuple[str, bytes]:
    if n % 2:
        body = {"instances": [f"request {n} asks"], "parameters": {"max_tokens": 8}}
        return "predict", json.dumps(body).encode()
    chat = {"model": "tiny", "messages": [{"role": "user", "content": f"hi {n}"}], "max_tokens": 8}
    return "chat", json.dumps(chat).encode()


async def _load(base: str, predict: str, health: str) -> dict[str, Any]:
    statuses: dict[str, list[int]] = {"good": [], "bad": [], "health": []}
    errors: list[str] = []
    limits = httpx.Limits(max_connections=CONCURRENCY + 4, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(REQUESTS):
            queue.put_nowait(n)

        async def worker() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                bad = n % MALFORMED_EVERY == 0
                if bad:
                    path, body = predict, MALFORMED[(n // MALFORMED_EVERY) % len(MALFORMED)][1]
                else:
                    kind, body = good_body(n)
                    path = predict if kind == "predict" else "/v1/chat/completions"
                try:
                    response = await http.post(
                        path, content=body, headers={"content-type": "application/json"}
                    )
                    statuses["bad" if bad else "good"].append(response.status_code)
                except httpx.HTTPError as error:
                    errors.append(f"{n}: {error!r}")

        def watch_health(done: threading.Event) -> None:
            # Its own thread and connection, as Vertex's prober is: never queued behind the load.
            with httpx.Client(base_url=base, timeout=10) as prober:
                while not done.is_set():
                    try:
                        statuses["health"].append(prober.get(health).status_code)
                    except httpx.HTTPError:
                        statuses["health"].append(0)
                    done.wait(0.25)

        done = threading.Event()
        watcher = threading.Thread(target=watch_health, args=(done,))
        watcher.start()
        began = time.monotonic()
        try:
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        finally:
            elapsed = time.monotonic() - began
            done.set()
            watcher.join(timeout=30)
    return {**statuses, "errors": errors, "elapsed_s": elapsed}


def test_the_deployment_serves_tokens_through_the_endpoint(
    deployed: tuple[Running, dict[str, Any]],
) -> None:
    """Through the emulator's endpoint (not the container's port): predict names its deployed
    model, rawPredict takes an OpenAI body, and the openai client streams a chat."""
    import openai

    vertex, _ = deployed
    endpoint = f"{PARENT}/endpoints/tiny"
    served = vertex.call("GET", f"/v1/{endpoint}")["deployedModels"][0]["id"]
    answer = vertex.call(
        "POST",
        f"/v1/{endpoint}:predict",
        json={"instances": [{"prompt": "hello"}], "parameters": {"max_tokens": 8}},
    )
    assert len(answer["predictions"]) == 1 and answer["predictions"][0]
    assert answer["deployedModelId"] == served
    raw = vertex.call(
        "POST",
        f"/v1/{endpoint}:rawPredict",
        json={"prompt": "hello", "max_tokens": 8, "ignore_eos": True},
    )
    assert raw["usage"]["completion_tokens"] == 8
    client = openai.OpenAI(base_url=f"{vertex.url}/v1/{endpoint}", api_key="unused")
    stream = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=8, stream=True
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) >= 2


def test_load_with_malformed_requests_answers_every_good_one(
    deployed: tuple[Running, dict[str, Any]], figures: Figures
) -> None:
    """1,000 requests at concurrency 128, 10% malformed, straight to the container: every good one 200, every bad one a 4xx, health 200 throughout."""
    _, process = deployed
    base = f"http://127.0.0.1:{process['port']}"
    outcome = asyncio.run(_load(base, process["predictRoute"], process["healthRoute"]))
    good, bad, health = outcome["good"], outcome["bad"], outcome["health"]
    figures.record(
        "serving-load",
        requests=REQUESTS,
        concurrency=CONCURRENCY,
        malformed=len(bad),
        good_answered=sum(1 for s in good if s == 200),
        good_lost=len(good) - sum(1 for s in good if s == 200) + len(outcome["errors"]),
        bad_4xx=sum(1 for s in bad if 400 <= s < 500),
        health_checks=len(health),
        health_not_200=sum(1 for s in health if s != 200),
        elapsed_s=round(outcome["elapsed_s"], 1),
    )
    assert outcome["errors"] == []
    assert len(good) + len(bad) == REQUESTS and len(bad) == REQUESTS // MALFORMED_EVERY
    assert sorted(set(good)) == [200]
    assert all(400 <= s < 500 for s in bad), sorted(set(bad))
    assert health and set(health) == {200}


def _engine_core_pids(root: int) -> list[int]:
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            pending.extend(children)
            found += [
                c for c in children if b"EngineCore" in Path(f"/proc/{c}/cmdline").read_bytes()
            ]
    return found


def test_the_engine_killed_under_load_turns_health_503_and_the_deployment_unhealthy(
    deployed: tuple[Running, dict[str, Any]], figures: Figures
) -> None:
    """SIGKILL to the engine process mid-load: health answers 503 (or the server exits), and the emulator reports the deployed model with no available replica."""
    vertex, process = deployed
    base = f"http://127.0.0.1:{process['port']}"
    engines = _engine_core_pids(process["pid"])
    assert engines, "no EngineCore process under the deployment"
    health: list[int] = []

    async def load_and_kill() -> list[int]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            body = {
                "instances": ["keep going"],
                "parameters": {"max_tokens": 256, "ignore_eos": True},
            }

            async def one() -> int:
                try:
                    return (await http.post(process["predictRoute"], json=body)).status_code
                except httpx.HTTPError:
                    return 0

            inflight = [asyncio.create_task(one()) for _ in range(64)]
            await asyncio.sleep(0.3)
            for pid in engines:
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    health.append((await http.get(process["healthRoute"])).status_code)
                except httpx.HTTPError:
                    health.append(0)  # the server exited: the port is closed
                if health[-1] != 200:
                    break
                await asyncio.sleep(0.2)
            return list(await asyncio.gather(*inflight))

    answers = asyncio.run(load_and_kill())
    deadline = time.monotonic() + 30
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        endpoint = vertex.call("GET", f"{V1}/endpoints/tiny")
        status = endpoint["deployedModels"][0].get("status", {})
        if status.get("availableReplicaCount", 1) == 0:
            break
        time.sleep(0.5)
    figures.record(
        "serving-engine-killed",
        in_flight=len(answers),
        answered_200=sum(1 for s in answers if s == 200),
        answered_503=sum(1 for s in answers if s == 503),
        answered_other=sorted({s for s in answers if s not in (0, 200, 503)}),
        dropped=sum(1 for s in answers if s == 0),
        health_after_kill=health[-1] if health else None,
        emulator_available_replicas=status.get("availableReplicaCount"),
    )
    assert 0 not in answers, "an in-flight request got no HTTP answer"
    # The engine's death is the replica's: unavailable (retry elsewhere), not an internal error.
    assert set(answers) <= {200, 503}, sorted(set(answers))
    assert health and health[-1] in (503, 0), health
    assert status.get("availableReplicaCount") == 0, status
    assert status.get("message")
