"""Helpers for tests: an emulator child process whose echo image runs `local.vertex.echo_server`."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from local.processes import Child, free_port
from local.vertex.launcher import start_vertex

ECHO_IMAGE = "us-docker.pkg.dev/modeldrop-test/test/echo:1"
ECHO_MAP = f"*/echo:*={sys.executable} -m local.vertex.echo_server"
PARENT = "projects/modeldrop-test/locations/us-central1"
V1 = f"/v1/{PARENT}"


@dataclass
class Running:
    """A running emulator: where it listens, its process and its data folder."""

    url: str
    port: int
    child: Child
    data_dir: Path

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One REST call that must answer 200; its JSON."""
        response = httpx.request(method, self.url + path, timeout=30, **kwargs)
        if response.status_code != 200:
            raise AssertionError(
                f"{method} {path} answered {response.status_code}: {response.text}"
            )
        return response.json()

    def wait_operation(self, name: str, timeout_s: float = 30) -> dict[str, Any]:
        """Poll the operation at /ui/{name} (as the SDK does) until it is done."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            operation: dict[str, Any] = self.call("GET", f"/ui/{name}")
            if operation.get("done"):
                return operation
            time.sleep(0.1)
        raise AssertionError(f"operation {name} not done after {timeout_s}s")

    def echo_model(self, model_id: str, args: list[str] | None = None) -> tuple[str, str]:
        """Upload `model_id` (the echo image with `args`) and an endpoint of the same id."""
        spec = {
            "imageUri": ECHO_IMAGE,
            "args": args or [],
            "env": [{"name": "FROM_SPEC", "value": "$(AIP_ENDPOINT_ID)"}],
        }
        model = {
            "displayName": model_id,
            "containerSpec": spec,
            "artifactUri": f"gs://w/models/{model_id}/v1",
        }
        self.call("POST", f"{V1}/models:upload", json={"modelId": model_id, "model": model})
        self.call(
            "POST",
            f"{V1}/endpoints",
            params={"endpointId": model_id},
            json={"displayName": model_id},
        )
        return f"{PARENT}/models/{model_id}", f"{PARENT}/endpoints/{model_id}"

    def start_deploy(self, model: str, endpoint: str, accelerator: bool = False) -> str:
        """Start a deploy of `model` on `endpoint`; the operation's name."""
        machine: dict[str, Any] = {"machineType": "n1-standard-4"}
        if accelerator:
            machine.update(acceleratorType="NVIDIA_TESLA_T4", acceleratorCount=1)
        deployed = {
            "model": model,
            "dedicatedResources": {"machineSpec": machine, "minReplicaCount": 1},
        }
        body = {"deployedModel": deployed}
        return str(self.call("POST", f"/v1/{endpoint}:deployModel", json=body)["name"])

    def deploy(self, model: str, endpoint: str) -> str:
        """Deploy and wait; the deployed model's id."""
        operation = self.wait_operation(self.start_deploy(model, endpoint))
        if "error" in operation:
            raise AssertionError(f"deploy failed: {operation['error']}")
        return str(operation["response"]["deployedModel"]["id"])

    def process(self, deployed_model_id: str) -> dict[str, Any]:
        """What /emulator/deployments says about the process serving `deployed_model_id`."""
        found = self.call("GET", "/emulator/deployments")["deployments"]
        return dict(next(d for d in found if d["deployedModelId"] == deployed_model_id))


def launch(
    tmp: Path, *args: str, port: int | None = None, env: Mapping[str, str] | None = None
) -> Running:
    """Start an emulator keeping state in `tmp`/data, mapping ECHO_IMAGE to the echo server."""
    port = port or free_port()
    data_dir = tmp / "data"
    child = start_vertex(
        port,
        data_dir,
        tmp / f"vertex-{port}.log",
        ["--image-map", ECHO_MAP, "--deploy-timeout", "20", "--health-interval", "0.2", *args],
        env=env,
    )
    return Running(f"http://127.0.0.1:{port}", port, child, data_dir)
