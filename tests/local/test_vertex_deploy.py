"""Deployments as real local processes: the AIP_* contract, readiness, death, restarts and the proxies."""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local.processes import free_port, start, stop, wait_http
from local.vertex.testing import ECHO_MAP, Running, launch


@pytest.fixture(scope="module")
def vertex(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    env = {**os.environ, "PASSED_THROUGH": "from-the-emulator"}
    running = launch(
        tmp_path_factory.mktemp("vertex-deploy"), "--deployment-env", "EXTRA=yes", env=env
    )
    try:
        yield running
    finally:
        stop(running.child)


@pytest.mark.stack
def test_the_process_gets_the_aip_contract(vertex: Running) -> None:
    """The process sees AIP_* variables, $(VAR)-expanded args and env, --deployment-env and the emulator's env."""
    model, endpoint = vertex.echo_model("contract", ["--port=$(AIP_HTTP_PORT)"])
    deployed_model_id = vertex.deploy(model, endpoint)
    running = vertex.process(deployed_model_id)
    seen = httpx.get(f"http://127.0.0.1:{running['port']}/env").json()
    env = seen["env"]
    assert env["AIP_HTTP_PORT"] == str(running["port"])
    assert env["AIP_STORAGE_URI"] == "gs://w/models/contract/v1"
    assert (
        env["AIP_DEPLOYED_MODEL_ID"] == deployed_model_id and env["AIP_ENDPOINT_ID"] == "contract"
    )
    assert env["AIP_HEALTH_ROUTE"] == f"/v1/endpoints/contract/deployedModels/{deployed_model_id}"
    assert env["AIP_PREDICT_ROUTE"] == env["AIP_HEALTH_ROUTE"] + ":predict"
    assert env["AIP_MACHINE_TYPE"] == "n1-standard-4" and env["FROM_SPEC"] == "contract"
    assert env["EXTRA"] == "yes" and env["PASSED_THROUGH"] == "from-the-emulator"
    assert seen["argv"] == [f"--port={running['port']}"]


@pytest.mark.stack
def test_a_server_that_exits_fails_the_deploy_with_its_log(vertex: Running) -> None:
    """A process that exits before its health route answers fails the operation with FAILED_PRECONDITION."""
    model, endpoint = vertex.echo_model("crashing", ["--exit-at-start"])
    operation = vertex.wait_operation(vertex.start_deploy(model, endpoint))
    assert operation["error"]["code"] == 9
    assert operation["error"]["message"].startswith("Model server never became ready")
    assert "refusing to start" in operation["error"]["message"]
    assert vertex.call("GET", f"/v1/{endpoint}").get("deployedModels", []) == []
    assert vertex.call("GET", f"/v1/{model}").get("deployedModels", []) == []
    assert vertex.call("GET", "/emulator/deployments")["deployments"] == [
        d
        for d in vertex.call("GET", "/emulator/deployments")["deployments"]
        if d["endpoint"] != endpoint
    ]


@pytest.mark.stack
def test_a_dead_process_is_reported_and_predict_answers_503(vertex: Running) -> None:
    """When the process dies the deployed model shows no available replica and predict is UNAVAILABLE."""
    model, endpoint = vertex.echo_model("dying")
    deployed_model_id = vertex.deploy(model, endpoint)
    vertex.call("POST", f"/v1/{endpoint}:predict", json={"instances": [1]})
    vertex.call("POST", f"/emulator/deployments/dying/{deployed_model_id}:kill")

    deadline = time.monotonic() + 10
    while vertex.process(deployed_model_id)["state"] != "dead" and time.monotonic() < deadline:
        time.sleep(0.1)
    status = vertex.call("GET", f"/v1/{endpoint}")["deployedModels"][0]["status"]
    assert status["availableReplicaCount"] == 0 and "exited" in status["message"]
    response = httpx.post(f"{vertex.url}/v1/{endpoint}:predict", json={"instances": [1]})
    assert response.status_code == 503
    assert response.json()["error"]["status"] == "UNAVAILABLE"


@pytest.mark.stack
def test_openai_client_and_raw_predict_stream_through(vertex: Running) -> None:
    """The openai client (plain and streamed) and rawPredict/streamRawPredict (raw or as a JSON HttpBody) reach the deployment."""
    import openai

    model, endpoint = vertex.echo_model("chat")
    deployed_model_id = vertex.deploy(model, endpoint)
    client = openai.OpenAI(base_url=f"{vertex.url}/v1/{endpoint}", api_key="unused")
    reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == f"echo from {deployed_model_id}"
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in stream)
        == f"echo from {deployed_model_id}"
    )
    assert client.completions.create(model="m", prompt="hi").choices[0].text.startswith("echo")

    raw = httpx.post(f"{vertex.url}/v1/{endpoint}:rawPredict", json={"prompt": "hi"})
    assert raw.json()["choices"][0]["text"].startswith("echo")
    wrapped = {
        "httpBody": {
            "contentType": "application/json",
            "data": base64.b64encode(b'{"prompt": "x"}').decode(),
        }
    }
    unwrapped = httpx.post(f"{vertex.url}/v1/{endpoint}:rawPredict", json=wrapped)
    assert unwrapped.json()["object"] == "text_completion"
    assert raw.headers["x-vertex-ai-deployed-model-id"] == deployed_model_id
    with httpx.stream(
        "POST",
        f"{vertex.url}/v1/{endpoint}:streamRawPredict",
        json={"prompt": "hi", "stream": True},
    ) as streamed:
        assert streamed.headers["content-type"].startswith("text/event-stream")
        events = [line for line in streamed.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0].removeprefix("data: "))["choices"][0]["text"] == "echo"


@pytest.mark.stack
def test_a_restarted_emulator_keeps_state_and_relaunches(tmp_path: Path) -> None:
    """After a restart on the same data folder, models, endpoints and operations remain and predict works."""
    first = launch(tmp_path)
    try:
        model, endpoint = first.echo_model("durable")
        operation = first.wait_operation(first.start_deploy(model, endpoint))
        deployed_model_id = operation["response"]["deployedModel"]["id"]
        first.call("POST", f"/v1/{endpoint}:predict", json={"instances": [1]})
    finally:
        stop(first.child)
    second = launch(tmp_path, port=first.port)
    try:
        assert second.call("GET", f"/v1/{model}")["displayName"] == "durable"
        assert second.call("GET", f"/v1/{operation['name']}")["done"] is True
        deadline = time.monotonic() + 20
        while second.process(deployed_model_id)["state"] != "ready" and time.monotonic() < deadline:
            time.sleep(0.1)
        answer = second.call("POST", f"/v1/{endpoint}:predict", json={"instances": [2]})
        assert answer["deployedModelId"] == deployed_model_id
        status = second.call("GET", f"/v1/{endpoint}")["deployedModels"]
        assert {d["status"]["availableReplicaCount"] for d in status} == {1}
    finally:
        stop(second.child)


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its new parent to reap it)."""
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


@pytest.mark.stack
def test_a_killed_emulator_leaves_no_orphan_after_restart(tmp_path: Path) -> None:
    """If the emulator is SIGKILLed, the next start stops the deployment process it left and relaunches."""
    first = launch(tmp_path)
    model, endpoint = first.echo_model("orphaned")
    deployed_model_id = first.deploy(model, endpoint)
    orphan = first.process(deployed_model_id)["pid"]
    os.kill(first.child.pid, signal.SIGKILL)
    first.child.popen.wait(timeout=10)
    assert alive(orphan)

    second = launch(tmp_path, port=first.port)
    try:
        deadline = time.monotonic() + 10
        while alive(orphan) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(orphan)
        while second.process(deployed_model_id)["state"] != "ready" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert second.process(deployed_model_id)["pid"] != orphan
    finally:
        stop(second.child)


@pytest.mark.stack
def test_malformed_requests_are_invalid_argument(vertex: Running) -> None:
    """Bad JSON, a non-object PATCH body or a bad pageSize answer 400 INVALID_ARGUMENT, never 500."""
    cases = [
        ("POST", "/v1/projects/p/locations/l/models:upload", {"content": b"{not json"}),
        ("PATCH", "/v1/projects/p/locations/l/endpoints/e?updateMask=labels", {"json": [1]}),
        ("GET", "/v1/projects/p/locations/l/endpoints?pageSize=many", {}),
        (
            "POST",
            "/v1/projects/p/locations/l/models:upload",
            {"json": {"model": {"displayName": 3}}},
        ),
    ]
    for method, path, kwargs in cases:
        response = httpx.request(method, vertex.url + path, **kwargs)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


@pytest.mark.stack
def test_without_a_data_dir_nothing_is_left_behind(tmp_path: Path) -> None:
    """With no --data-dir, state lives in memory and the deployment logs' folder is removed at exit."""
    port = free_port()
    argv = [sys.executable, "-m", "local.vertex", "--port", str(port), "--image-map", ECHO_MAP]
    child = start("vertex-memory", argv, tmp_path / "vertex.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", child, timeout_s=30)
        running = Running(f"http://127.0.0.1:{port}", port, child, tmp_path)
        model, endpoint = running.echo_model("ephemeral")
        log_path = Path(running.process(running.deploy(model, endpoint))["logPath"])
        assert log_path.exists()
    finally:
        stop(child)
    assert child.popen.returncode == 0
    assert not log_path.parent.parent.exists()
