"""The gcloud CLI against the emulator through CLOUDSDK_API_ENDPOINT_OVERRIDES_AIPLATFORM, offline, under both presets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.processes import stop
from local.vertex.testing import ECHO_IMAGE, PARENT, V1, Running, launch

pytestmark = pytest.mark.skipif(
    shutil.which("gcloud") is None, reason="the gcloud CLI is not installed"
)


# faithful at 0.005: gcloud waits on a 3 s deploy and a 0.6 s undeploy; creations take 0.1 s.
PRESETS = {
    "legacy": (),
    "faithful": ("--fidelity", "faithful", "--time-scale", "0.005"),
}


@pytest.fixture(scope="module", params=sorted(PRESETS))
def vertex(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    running = launch(
        tmp_path_factory.mktemp(f"vertex-gcloud-{request.param}"), *PRESETS[request.param]
    )
    try:
        yield running
    finally:
        stop(running.child)


def echo_model(vertex: Running, model_id: str) -> tuple[str, str]:
    """The echo model and its endpoint, past their operations (faithful: visible only then)."""
    model, endpoint = vertex.echo_model(model_id)
    for parent in (model, endpoint):
        for operation in vertex.call("GET", f"/v1/{parent}/operations")["operations"]:
            vertex.wait_operation(operation["name"])
    return model, endpoint


def gcloud(vertex: Running, tmp: Path, *args: str, fails: bool = False) -> Any:
    """Run gcloud with its own config folder and a dummy access token: no login, no network.

    Its JSON output, or (`fails`) the error it printed."""
    token = tmp / "token"
    token.write_text("offline-token")
    env = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(tmp / "gcloud-config"),
        "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE": str(token),
        "CLOUDSDK_CORE_PROJECT": "modeldrop-test",
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_AIPLATFORM": f"{vertex.url}/",
    }
    done = subprocess.run(
        ["gcloud", *args, "--region=us-central1", "--format=json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if fails:
        assert done.returncode != 0, done.stdout
        return done.stderr
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.stack
def test_gcloud_lists_models_and_endpoints(vertex: Running, tmp_path: Path) -> None:
    """`gcloud ai models list` and `gcloud ai endpoints list` show what the emulator holds."""
    echo_model(vertex, "listed")
    created = vertex.call(
        "POST",
        f"{V1}/endpoints",
        params={"endpointId": "labelled"},
        json={"displayName": "labelled", "labels": {"managed-by": "modeldrop"}},
    )
    vertex.wait_operation(created["name"])
    models = gcloud(vertex, tmp_path, "ai", "models", "list")
    assert [m["name"] for m in models] == [f"{PARENT}/models/listed"]
    endpoints = gcloud(
        vertex, tmp_path, "ai", "endpoints", "list", "--filter=labels.managed-by=modeldrop"
    )
    assert [e["name"] for e in endpoints] == [f"{PARENT}/endpoints/labelled"]


@pytest.mark.stack
def test_gcloud_deploys_predicts_and_undeploys(vertex: Running, tmp_path: Path) -> None:
    """`gcloud ai endpoints deploy-model`, `predict`, `raw-predict` and `undeploy-model` work end to end."""
    model, endpoint = echo_model(vertex, "by-gcloud")
    endpoint_id, model_id = endpoint.rsplit("/", 1)[1], model.rsplit("/", 1)[1]
    ai = ("ai", "endpoints")
    gcloud(
        vertex, tmp_path, *ai, "deploy-model", endpoint_id, f"--model={model_id}",
        "--display-name=by-gcloud", "--machine-type=n1-standard-4",
    )  # fmt: skip
    [deployed] = vertex.call("GET", f"/v1/{endpoint}")["deployedModels"]
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"instances": [{"prompt": "hi"}]}))
    predicted = gcloud(vertex, tmp_path, *ai, "predict", endpoint_id, f"--json-request={request}")
    assert predicted["predictions"] == [
        {"echo": {"prompt": "hi"}, "deployedModelId": deployed["id"]}
    ]
    raw = gcloud(vertex, tmp_path, *ai, "raw-predict", endpoint_id, '--request={"prompt": "x"}')
    assert raw["choices"][0]["text"] == f"echo from {deployed['id']}"
    undeploy = f"--deployed-model-id={deployed['id']}"
    gcloud(vertex, tmp_path, *ai, "undeploy-model", endpoint_id, undeploy)
    assert vertex.call("GET", f"/v1/{endpoint}").get("deployedModels", []) == []


@pytest.mark.stack
def test_gcloud_uploads_creates_and_deploys_through_beta(
    vertex: Running, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`models upload` (an inverted probe refused under faithful), `beta endpoints create` and `beta deploy-model` (v1beta1 operations), `models delete` refused while deployed."""
    faithful = request.node.callspec.params["vertex"] == "faithful"
    upload = (
        "ai", "models", "upload", "--display-name=cli", f"--container-image-uri={ECHO_IMAGE}",
    )  # fmt: skip
    probe = (
        "--container-health-probe-period-seconds=30",
        "--container-health-probe-timeout-seconds=10",
    )
    if faithful:
        error = gcloud(vertex, tmp_path, *upload, "--model-id=inverted", *probe, fails=True)
        assert "INVALID_ARGUMENT" in error and "period_seconds" in error
    gcloud(vertex, tmp_path, *upload, "--model-id=cli")
    created = gcloud(
        vertex, tmp_path, "beta", "ai", "endpoints", "create", "--display-name=cli",
        "--endpoint-id=cli",
    )  # fmt: skip
    assert created["@type"].endswith("v1beta1.Endpoint")
    gcloud(
        vertex, tmp_path, "beta", "ai", "endpoints", "deploy-model", "cli", "--model=cli",
        "--display-name=cli", "--machine-type=n1-standard-4", "--deployed-model-id=42",
    )  # fmt: skip
    [deployed] = vertex.call("GET", f"{V1}/endpoints/cli")["deployedModels"]
    assert deployed["id"] == "42"
    error = gcloud(vertex, tmp_path, "ai", "models", "delete", "cli", fails=True)
    assert "FAILED_PRECONDITION" in error and "Undeploy it first" in error
