"""The gcloud CLI against the emulator through CLOUDSDK_API_ENDPOINT_OVERRIDES_AIPLATFORM, offline."""

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
from local.vertex.testing import PARENT, V1, Running, launch

pytestmark = pytest.mark.skipif(
    shutil.which("gcloud") is None, reason="the gcloud CLI is not installed"
)


@pytest.fixture(scope="module")
def vertex(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = launch(tmp_path_factory.mktemp("vertex-gcloud"))
    try:
        yield running
    finally:
        stop(running.child)


def gcloud(vertex: Running, tmp: Path, *args: str) -> Any:
    """Run gcloud with its own config folder and a dummy access token: no login, no network."""
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
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.stack
def test_gcloud_lists_models_and_endpoints(vertex: Running, tmp_path: Path) -> None:
    """`gcloud ai models list` and `gcloud ai endpoints list` show what the emulator holds."""
    vertex.echo_model("listed")
    vertex.call(
        "POST",
        f"{V1}/endpoints",
        params={"endpointId": "labelled"},
        json={"displayName": "labelled", "labels": {"managed-by": "modeldrop"}},
    )
    models = gcloud(vertex, tmp_path, "ai", "models", "list")
    assert [m["name"] for m in models] == [f"{PARENT}/models/listed"]
    endpoints = gcloud(
        vertex, tmp_path, "ai", "endpoints", "list", "--filter=labels.managed-by=modeldrop"
    )
    assert [e["name"] for e in endpoints] == [f"{PARENT}/endpoints/labelled"]


@pytest.mark.stack
def test_gcloud_deploys_predicts_and_undeploys(vertex: Running, tmp_path: Path) -> None:
    """`gcloud ai endpoints deploy-model`, `predict`, `raw-predict` and `undeploy-model` work end to end."""
    model, endpoint = vertex.echo_model("by-gcloud")
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
