"""Deployments as local processes: a model's container spec run with the AIP_* contract."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from local import processes
from local.vertex.errors import invalid, precondition
from local.vertex.resources import MachineSpec, Model
from local.vertex.settings import SERVING_DEFAULT_ENV, Settings

NEVER_READY = (
    "Model server never became ready. Please validate that your model file or container "
    "configuration are valid."
)
log = logging.getLogger(__name__)
MAX_DEPLOYMENT_TIMEOUT_S = 7200.0
_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class State(enum.Enum):
    STARTING = "starting"  # process started; its health route has not answered 200 yet
    READY = "ready"  # health route answered 200; traffic may go to it
    DEAD = "dead"  # the process exited (or its health route failed) after it was ready; predicts answer 503
    STOPPED = "stopped"  # undeployed, or the emulator is shutting down


@dataclass(frozen=True)
class LaunchSpec:
    """What one deployment needs: where it lives and the model version it serves."""

    endpoint: str  # projects/P/locations/L/endpoints/E
    deployed_model_id: str
    model: Model
    machine_spec: MachineSpec | None

    @property
    def endpoint_id(self) -> str:
        return self.endpoint.rsplit("/", 1)[-1]

    @property
    def key(self) -> str:
        return f"{self.endpoint}/deployedModels/{self.deployed_model_id}"


@dataclass
class Deployment:
    spec: LaunchSpec
    port: int
    health_route: str
    predict_route: str
    child: processes.Child
    state: State = State.STARTING
    message: str = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def expand(text: str, env: dict[str, str]) -> str:
    """Vertex expands `$(VAR)` in args and env values from the variables defined so far."""
    return _REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def deadline_s(model: Model, default: float) -> float:
    """The model's containerSpec.deploymentTimeout (a Duration, at most 2 hours), else `default`."""
    text = model.container_spec.deployment_timeout if model.container_spec else None
    if not text:
        return default
    try:
        seconds = float(text.removesuffix("s"))
    except ValueError as error:
        raise invalid(
            f"containerSpec.deploymentTimeout must look like '1800s', not {text!r}."
        ) from error
    if not 0 < seconds <= MAX_DEPLOYMENT_TIMEOUT_S:
        raise invalid("containerSpec.deploymentTimeout must be positive and at most 2 hours.")
    return seconds


class Deployments:
    """Every running deployment, keyed by `endpoint/deployedModels/id`."""

    def __init__(self, settings: Settings, data_dir: Path) -> None:
        self.settings = settings
        self.logs_dir = data_dir / "logs"
        # One file per live process, so a restart after a crash can stop what it left behind.
        self.pids_dir = data_dir / "pids"
        self.pids_dir.mkdir(parents=True, exist_ok=True)
        self.running: dict[str, Deployment] = {}

    def reap_orphans(self, grace_s: float = 10.0) -> int:
        """Stop deployment processes a killed emulator left running; how many were stopped."""
        orphans = []
        for path in self.pids_dir.glob("*.json"):
            try:
                record = json.loads(path.read_text())
                pid, argv = int(record["pid"]), [str(a) for a in record["argv"]]
            except (OSError, ValueError, KeyError, TypeError):
                pid, argv = 0, []
            # Only a process still running our exact argv is ours: PIDs get reused.
            if pid and _cmdline(pid) == argv:
                orphans.append(pid)
                _signal_group(pid, signal.SIGTERM)
            path.unlink(missing_ok=True)
        # Their parent is gone, so nobody here can reap them: a zombie (no cmdline) has exited.
        deadline = time.monotonic() + grace_s
        while any(_cmdline(pid) for pid in orphans) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in orphans:
            _signal_group(pid, signal.SIGKILL)
        return len(orphans)

    def _pid_file(self, spec: LaunchSpec) -> Path:
        return self.pids_dir / f"{spec.endpoint_id}-{spec.deployed_model_id}.json"

    def check_image(self, model: Model) -> list[str]:
        """The command the model's image runs as, or FAILED_PRECONDITION saying how to map it."""
        if model.container_spec is None:
            raise precondition(f"Model {model.name} has no container_spec; it cannot be deployed.")
        command = self.settings.command_for(model.container_spec.image_uri)
        if command is None:
            raise precondition(
                f"The emulator has no local command for image {model.container_spec.image_uri!r}: "
                "start it with --image-map PATTERN=COMMAND."
            )
        return command

    def environment(self, spec: LaunchSpec, port: int) -> tuple[dict[str, str], str, str]:
        container = spec.model.container_spec
        assert container is not None
        base = f"/v1/endpoints/{spec.endpoint_id}/deployedModels/{spec.deployed_model_id}"
        health = container.health_route or base
        predict = container.predict_route or f"{base}:predict"
        project = spec.endpoint.split("/")[1]
        aip = {
            "AIP_HTTP_PORT": str(port),
            "AIP_HEALTH_ROUTE": health,
            "AIP_PREDICT_ROUTE": predict,
            "AIP_DEPLOYED_MODEL_ID": spec.deployed_model_id,
            "AIP_ENDPOINT_ID": spec.endpoint_id,
            "AIP_PROJECT_NUMBER": project,
            "AIP_MODE": "PREDICTION",
            "AIP_MODE_VERSION": "1.0.0",
            "AIP_FRAMEWORK": "CUSTOM_CONTAINER",
            "AIP_MACHINE_TYPE": spec.machine_spec.machine_type if spec.machine_spec else "",
            "AIP_ACCELERATOR_TYPE": (spec.machine_spec.accelerator_type or "")
            if spec.machine_spec
            else "",
        }
        if spec.model.artifact_uri:
            aip["AIP_STORAGE_URI"] = spec.model.artifact_uri
        defaults = SERVING_DEFAULT_ENV if self.settings.is_serving(container.image_uri) else {}
        env = {**defaults, **self.settings.base_env, **self.settings.deployment_env, **aip}
        for variable in container.env:
            env[variable.name] = expand(variable.value, env)
        return env, health, predict

    async def launch(self, spec: LaunchSpec) -> Deployment:
        """Start the process and wait for its health route; FAILED_PRECONDITION if it never answers."""
        command = self.check_image(spec.model)
        assert spec.model.container_spec is not None
        port = processes.free_port()
        env, health, predict = self.environment(spec, port)
        if spec.model.container_spec.command:
            log.info(
                "%s: containerSpec.command is ignored; the image map is the entrypoint", spec.key
            )
        argv = command + [expand(arg, env) for arg in spec.model.container_spec.args]
        log_path = self.logs_dir / f"{spec.endpoint_id}-{spec.deployed_model_id}.log"
        timeout_s = deadline_s(spec.model, self.settings.deploy_timeout_s)
        child = processes.start(spec.key, argv, log_path, env=env)
        self._pid_file(spec).write_text(json.dumps({"pid": child.pid, "argv": argv}))
        deployment = Deployment(spec, port, health, predict, child)
        self.running[spec.key] = deployment
        try:
            await self._wait_ready(deployment, timeout_s)
        except BaseException:
            await self.stop(spec.key)
            raise
        deployment.state = State.READY
        return deployment

    async def _wait_ready(self, deployment: Deployment, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        url = deployment.base_url + deployment.health_route
        async with httpx.AsyncClient(timeout=2.0) as client:
            while loop.time() < deadline:
                if not deployment.child.alive():
                    code = deployment.child.popen.returncode
                    raise precondition(
                        f"{NEVER_READY} The model server exited with code {code}. "
                        f"Last log lines:\n{deployment.child.log_tail(20)}"
                    )
                try:
                    if (await client.get(url)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise precondition(
            f"{NEVER_READY} Its health route {deployment.health_route} did not answer 200 within "
            f"{timeout_s:.0f}s. Last log lines:\n"
            f"{deployment.child.log_tail(20)}"
        )

    async def stop(self, key: str) -> None:
        """SIGTERM the deployment's process group (SIGKILL after a grace period) and forget it."""
        deployment = self.running.pop(key, None)
        if deployment is None:
            return
        deployment.state = State.STOPPED
        await asyncio.to_thread(processes.stop, deployment.child, 10.0)
        self._pid_file(deployment.spec).unlink(missing_ok=True)

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(key) for key in list(self.running)))

    async def watch(self, on_death: Callable[[Deployment], Awaitable[None]]) -> None:
        """Notice ready deployments whose process died or whose health route fails, forever; `on_death` records it."""
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                await asyncio.sleep(self.settings.health_interval_s)
                for deployment in list(self.running.values()):
                    if deployment.state is not State.READY:
                        continue
                    if not deployment.child.alive():
                        deployment.message = (
                            f"The model server exited with code {deployment.child.popen.returncode}; "
                            "no replica is available."
                        )
                    else:
                        # Vertex probes the health route of running replicas too: a server whose
                        # engine died answers 503 while its process lives on.
                        status = await _health(client, deployment)
                        if status is None or status == 200:
                            continue  # no answer in time is a busy server, not a failed one
                        deployment.message = (
                            f"The model server's health route {deployment.health_route} answered "
                            f"{status}; no replica is available."
                        )
                    deployment.state = State.DEAD
                    await on_death(deployment)


async def _health(client: httpx.AsyncClient, deployment: Deployment) -> int | None:
    """The health route's status, or None when it did not answer in time."""
    try:
        response = await client.get(deployment.base_url + deployment.health_route)
    except httpx.HTTPError:
        return None
    return response.status_code


def _cmdline(pid: int) -> list[str]:
    """The argv of a running process; empty when it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
