"""A local stack with echo deployments for the gateway's end-to-end test and benchmark: start it,
put an endpoint to sleep the way the sweep does, and count the wake commands published."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from local.processes import free_port
from local.stack import down, up
from local.stack_state import COMMANDS_TOPIC, STATE_BUCKET, Ports, StackConfig, StackState

ECHO_MAP = f"*/serving:*={sys.executable} -m local.vertex.echo_server"
MODEL = "echo-model"


def tiny_folder(where: Path) -> Path:
    """A version folder that passes the upload checks (the echo image never reads it)."""
    import struct

    where.mkdir(parents=True, exist_ok=True)
    config = {"architectures": ["GemmaForCausalLM"], "model_type": "gemma", "head_dim": 64}
    (where / "config.json").write_text(json.dumps(config))
    (where / "tokenizer.json").write_text('{"version": "1.0"}')
    header = json.dumps(
        {"lm_head.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    ).encode()
    header += b" " * (-len(header) % 8)
    (where / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    return where


@dataclass
class Rig:
    """A running stack and the handles the gateway's tests need."""

    config: StackConfig
    state: StackState

    @property
    def gateway(self) -> str:
        url = self.state.gateway_url
        assert url is not None
        return url

    @property
    def vertex(self) -> str:
        return self.state.vertex_endpoint

    @property
    def location(self) -> str:
        return f"projects/{self.state.project}/locations/{self.state.region}"

    def endpoint_url(self, endpoint: str) -> str:
        return f"{self.vertex}/v1/{self.location}/endpoints/{endpoint}"

    def cli(self, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
        """`modeldrop ARGS` against this stack, in its own process; it must exit 0."""
        env = {**os.environ, "MODELDROP_LOCAL_DIR": str(self.config.data_dir)}
        env["MODELDROP_PROFILE"] = "local"
        for name in ("PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
            env.pop(name, None)
        done = subprocess.run(
            [sys.executable, "-m", "modeldrop.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"modeldrop {' '.join(args)} exited {done.returncode}: {done.stderr}"
            )
        return done

    def deploy_echo(self, endpoint: str, idle_ttl: str) -> None:
        """Upload the tiny folder (once) and deploy it on `endpoint`, CPU only, until ready."""
        folder = tiny_folder(self.config.data_dir / "tiny")
        self.cli("upload", str(folder), "--model", MODEL, "--version", "v1", "--timeout", "120")
        self.cli(
            "deploy", MODEL, "--endpoint", endpoint, "--accelerator", "none",
            "--idle-ttl", idle_ttl, "--timeout", "300",
        )  # fmt: skip

    def deployed(self, endpoint: str) -> list[dict[str, Any]]:
        found = httpx.get(self.endpoint_url(endpoint), timeout=30)
        if found.status_code == 404:
            return []
        return list(found.json().get("deployedModels", []))

    def teardown_record(self, endpoint: str) -> dict[str, Any] | None:
        name = urllib.parse.quote(f"teardowns/{endpoint}.json", safe="")
        url = f"{self.state.storage_host}/storage/v1/b/{STATE_BUCKET}/o/{name}?alt=media"
        found = httpx.get(url, timeout=30)
        return found.json() if found.status_code == 200 else None

    def wait_asleep(self, endpoint: str, timeout_s: float = 180) -> float:
        """Until the sweep has torn everything down on `endpoint`; the seconds it took."""
        began = time.monotonic()
        while time.monotonic() - began < timeout_s:
            if not self.deployed(endpoint) and self.teardown_record(endpoint) is not None:
                return time.monotonic() - began
            time.sleep(0.5)
        raise TimeoutError(f"{endpoint} was not torn down within {timeout_s:.0f}s")

    def empty_endpoint(self, endpoint: str) -> None:
        """A managed endpoint with nothing deployed and nothing torn down (nothing to wake)."""
        body = {"displayName": endpoint, "labels": {"managed-by": "modeldrop"}}
        url = f"{self.vertex}/v1/{self.location}/endpoints?endpointId={endpoint}"
        httpx.post(url, json=body, timeout=30).raise_for_status()
        for _ in range(100):
            if httpx.get(self.endpoint_url(endpoint), timeout=30).status_code == 200:
                return
            time.sleep(0.2)

    def set_deploy_delay(self, seconds: float) -> None:
        """Every deploy from now takes `seconds` more (wall clock), on top of the modelled time."""
        body = {"deployDelayS": seconds}
        httpx.put(f"{self.vertex}/emulator/faults", json=body, timeout=10).raise_for_status()


class CommandTap:
    """A pull subscription on the commands topic: every command published after it was made."""

    def __init__(self, rig: Rig) -> None:
        self._base = f"http://{rig.state.pubsub_host}/v1/projects/{rig.state.project}"
        self._name = f"gateway-tap-{free_port()}"
        body = {"topic": f"projects/{rig.state.project}/topics/{COMMANDS_TOPIC}"}
        httpx.put(f"{self._base}/subscriptions/{self._name}", json=body, timeout=10)

    def drain(self, settle_s: float = 1.0) -> list[dict[str, Any]]:
        """Every command so far (pulled and acknowledged), once none arrived for `settle_s`."""
        found: list[dict[str, Any]] = []
        quiet = time.monotonic()
        url = f"{self._base}/subscriptions/{self._name}"
        while time.monotonic() - quiet < settle_s:
            got = httpx.post(
                f"{url}:pull", json={"maxMessages": 100, "returnImmediately": True}, timeout=10
            ).json()
            received = got.get("receivedMessages", [])
            if not received:
                time.sleep(0.2)
                continue
            quiet = time.monotonic()
            httpx.post(f"{url}:acknowledge", json={"ackIds": [m["ackId"] for m in received]})
            found += [json.loads(base64.b64decode(m["message"]["data"])) for m in received]
        return found


def start_rig(data_dir: Path, time_scale: float, wake_timeout: str = "3m") -> Rig:
    """The local stack under the faithful emulator at `time_scale`, deployments as echo servers."""
    os.environ.setdefault("MODELDROP_GATEWAY_KEEPALIVE", "1s")
    os.environ.setdefault("MODELDROP_GATEWAY_POLL", "1s")
    os.environ.setdefault("MODELDROP_GATEWAY_ACTIVITY_PERIOD", "1s")
    config = StackConfig(
        data_dir=data_dir,
        ports=Ports().with_free_ports(),
        tick_s=1.0,
        deploy_grace="1s",
        wake_timeout=wake_timeout,
        memory_gcs=True,
        vertex_args=(
            "--fidelity", "faithful", "--time-scale", str(time_scale),
            "--image-map", ECHO_MAP, "--health-interval", "0.2",
        ),
    )  # fmt: skip
    return Rig(config, up(config))


def stop_rig(rig: Rig) -> None:
    down(rig.config.data_dir)
