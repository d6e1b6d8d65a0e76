"""The local stack: every part of modeldrop on one machine, started in the background and stopped by PID."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from local.gcs_emulator import start_gcs
from local.processes import Child, ProcessError, start, stop_pid
from local.pubsub_emulator import start_pubsub
from local.stack_pubsub import PubSubAdmin, Push
from local.stack_state import (
    COMMANDS_TOPIC,
    DEAD_LETTER_ANSWERS,
    DEAD_LETTER_TOPIC,
    GCS_EVENTS_TOPIC,
    LOCAL_SERVING_IMAGE,
    REPO_ROOT,
    RESULTS_TOPIC,
    STATE_BUCKET,
    SWEEP_TOPIC,
    WEIGHTS_BUCKET,
    PartState,
    StackConfig,
    StackError,
    StackState,
    part_alive,
    process_start_ticks,
    read_state,
    write_state,
)
from local.vertex.fidelity import Fidelity
from local.vertex.settings import fidelity_from
from local.vertex.settings import parser as vertex_parser

FUNCTIONS = ("on_upload", "on_command", "sweep")
# max_instance_request_concurrency in terraform/variables.tf: one sweep at a time, 8 events otherwise.
FUNCTION_CONCURRENCY = {"on_upload": 8, "on_command": 8, "sweep": 1}
# The gateway holds each request in a thread while its endpoint wakes. On Google Cloud more
# instances start past var.gateway.concurrency; here one instance holds them all.
GATEWAY_THREADS = 256
# Stop order: what feeds work in first, then the functions, then Vertex (which stops its
# deployments), the storage and Pub/Sub emulators last.
STOP_STAGES: tuple[tuple[str, ...], ...] = (
    ("scheduler", "relay", "bridge", "gateway"),
    FUNCTIONS,
    ("vertex",),
    ("gcs-front", "gcs", "pubsub"),
)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class PartStatus:
    """One part as `status` sees it: is its process there, does it answer."""

    name: str
    pid: int
    alive: bool
    answers: bool
    state: str  # up, busy (accepts connections, serving others), down, exited
    url: str | None
    log: str


def stack_env(config: StackConfig) -> dict[str, str]:
    """The variables the functions (and any client) need to reach the local stack."""
    ports = config.ports
    vertex = f"http://127.0.0.1:{ports.vertex}"
    return {
        "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{ports.pubsub}",
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{ports.gcs}",
        # `gcloud storage` against the local bucket: through the front that answers storageLayout.
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": f"http://127.0.0.1:{ports.gcs_front}/",
        "GOOGLE_CLOUD_PROJECT": config.project,
        "MODELDROP_PROJECT": config.project,
        "MODELDROP_REGION": config.region,
        "MODELDROP_WEIGHTS_BUCKET": WEIGHTS_BUCKET,
        "MODELDROP_STATE_BUCKET": STATE_BUCKET,
        "MODELDROP_COMMANDS_TOPIC": COMMANDS_TOPIC,
        "MODELDROP_RESULTS_TOPIC": RESULTS_TOPIC,
        "MODELDROP_SWEEP_TOPIC": SWEEP_TOPIC,
        "MODELDROP_SERVING_IMAGE": LOCAL_SERVING_IMAGE,
        "MODELDROP_VERTEX_API_ENDPOINT": vertex,
        "MODELDROP_MONITORING_API_ENDPOINT": vertex,
        "MODELDROP_DEFAULT_IDLE_TTL": config.default_idle_ttl,
        "MODELDROP_DEPLOY_GRACE": config.deploy_grace,
        # How late the emulator's Monitoring shows a prediction, as its fidelity plays it.
        "MODELDROP_METRICS_DELAY": os.environ.get(
            "MODELDROP_METRICS_DELAY", f"{vertex_fidelity(config).metrics_delay_s}s"
        ),
        "MODELDROP_DEAD_LETTER_SUBSCRIPTION": DEAD_LETTER_ANSWERS,
        "MODELDROP_WAKE_TIMEOUT": config.wake_timeout,
        # Keep-alives and looks at a waking endpoint, quicker than on Google Cloud (10 s, 2 s).
        "MODELDROP_GATEWAY_KEEPALIVE": os.environ.get("MODELDROP_GATEWAY_KEEPALIVE", "5s"),
        "MODELDROP_GATEWAY_POLL": os.environ.get("MODELDROP_GATEWAY_POLL", "1s"),
        # Short local idle TTLs (the demo's 20 s) need the gateway's activity written more often
        # than Google Cloud's once a minute.
        "MODELDROP_GATEWAY_ACTIVITY_PERIOD": os.environ.get(
            "MODELDROP_GATEWAY_ACTIVITY_PERIOD", "5s"
        ),
    }


def up(config: StackConfig, progress: Progress = lambda line: None) -> StackState:
    """Start every part, wait until each answers, write the state file; StackError if it can't."""
    existing = running_state(config.data_dir)
    if existing is not None:
        raise StackError(
            f"the local stack is already running (started {existing.started_at:%Y-%m-%d %H:%M:%S} UTC, "
            f"Pub/Sub on {existing.pubsub_host}); `modeldrop local down` stops it"
        )
    _check_ports_free(config)
    if not config.functions_source.is_file():
        raise StackError(f"the functions' source {config.functions_source} is missing")
    config.logs_dir.mkdir(parents=True, exist_ok=True)
    env = stack_env(config)
    child_env = {**os.environ, **env}
    children: dict[str, Child] = {}
    urls: dict[str, str] = {}
    ports = config.ports
    began = time.monotonic()
    try:
        children["pubsub"] = start_pubsub(ports.pubsub, config.logs_dir / "pubsub.log")
        urls["pubsub"] = f"http://127.0.0.1:{ports.pubsub}/"
        progress(f"pubsub      ready on 127.0.0.1:{ports.pubsub} ({time.monotonic() - began:.1f}s)")
        admin = PubSubAdmin(env["PUBSUB_EMULATOR_HOST"], config.project)
        try:
            admin.create_topics()
            admin.create_pull(DEAD_LETTER_TOPIC, DEAD_LETTER_TOPIC)
            admin.create_pull(DEAD_LETTER_ANSWERS, DEAD_LETTER_TOPIC)
            _start_background(config, child_env, children, urls)
            children["gcs"] = start_gcs(
                ports.gcs,
                config.logs_dir / "gcs.log",
                env["PUBSUB_EMULATOR_HOST"],
                config.project,
                GCS_EVENTS_TOPIC,
                data_dir=None if config.memory_gcs else config.data_dir / "gcs",
            )
            urls["gcs"] = f"http://127.0.0.1:{ports.gcs}/storage/v1/b"
            front = [sys.executable, "-m", "local.gcs_front", "--port", str(ports.gcs_front)]
            front += ["--upstream", f"http://127.0.0.1:{ports.gcs}"]
            children["gcs-front"] = start(
                "gcs-front", front, config.logs_dir / "gcs-front.log", env=child_env, cwd=REPO_ROOT
            )
            urls["gcs-front"] = f"http://127.0.0.1:{ports.gcs_front}/storage/v1/b"
            for bucket in (WEIGHTS_BUCKET, STATE_BUCKET):
                _create_bucket(env["STORAGE_EMULATOR_HOST"], config.project, bucket)
            progress(
                f"gcs         ready on 127.0.0.1:{ports.gcs} ({time.monotonic() - began:.1f}s)"
            )
            for name in ("vertex", *FUNCTIONS, "gateway", "bridge", "gcs-front"):
                _wait_ready(name, children[name], urls[name], timeout_s=120)
                progress(f"{name:<11} ready at {urls[name]} ({time.monotonic() - began:.1f}s)")
            routes = []
            for push in _pushes(config):
                admin.create_push(push)
                routes += ["--route", push.route(admin)]
            children["relay"] = start(
                "relay",
                [sys.executable, "-m", "local.relay", *routes],
                config.logs_dir / "relay.log",
                env=child_env,
                cwd=REPO_ROOT,
            )
            progress("relay       push delivery with Pub/Sub's retry and dead-letter policies")
            children["scheduler"] = start(
                "scheduler",
                [
                    sys.executable,
                    "-m",
                    "local.scheduler",
                    "--topic",
                    admin.topic_path(SWEEP_TOPIC),
                    "--every",
                    str(config.tick_s),
                ],
                config.logs_dir / "scheduler.log",
                env=child_env,
                cwd=REPO_ROOT,
            )
            progress(f"scheduler   a sweep tick every {config.tick_s:g}s")
        finally:
            admin.close()
        state = StackState(
            project=config.project,
            region=config.region,
            data_dir=str(config.data_dir),
            started_at=datetime.now(UTC),
            parts={name: _part(child, urls.get(name)) for name, child in children.items()},
            env=env,
        )
        write_state(config.data_dir, state)
        return state
    except BaseException as error:
        for name in reversed(list(children)):
            stop_pid(children[name].pid, grace_s=5)
        if isinstance(error, ProcessError | OSError) and not isinstance(error, StackError):
            raise StackError(f"the local stack did not start: {error}") from error
        raise


def down(data_dir: Path, progress: Progress = lambda line: None) -> list[str]:
    """Stop every part `up` started, by PID, and remove the state file; the parts stopped."""
    state = read_state(data_dir)
    if state is None:
        raise StackError(f"no local stack is running (no state file in {data_dir})")
    stopped: list[str] = []
    # Deployments run in their own sessions: the emulator stops them on SIGTERM, and whatever
    # outlives it (a hung engine, an emulator killed after its grace) is stopped here by PID.
    deployments = _deployment_pids(state)
    for stage in STOP_STAGES:
        names = [n for n in stage if n in state.parts]
        names += [n for n in state.parts if stage is STOP_STAGES[0] and not _staged(n)]
        alive = [n for n in names if part_alive(state.parts[n])]
        for name in names:
            if name not in alive:
                progress(f"{name:<11} was not running")
        # One stage at a time, its parts in parallel: SIGTERM, then SIGKILL after the grace.
        with ThreadPoolExecutor(max_workers=max(len(alive), 1)) as pool:
            list(pool.map(lambda n: stop_pid(state.parts[n].pid, grace_s=_grace(n)), alive))
        for name in alive:
            progress(f"{name:<11} stopped (pid {state.parts[name].pid})")
        stopped += alive
        if "vertex" in stage:
            leftover = [pid for pid in deployments if _pid_alive(pid)]
            for pid in leftover:
                stop_pid(pid, grace_s=10)
                progress(f"{'deployment':<11} stopped (pid {pid}, left by the emulator)")
    (data_dir / "stack.json").unlink(missing_ok=True)
    return stopped


def _deployment_pids(state: StackState) -> list[int]:
    """The PIDs of the Vertex emulator's deployment processes, as it reports them (none if it is down)."""
    url = state.env.get("MODELDROP_VERTEX_API_ENDPOINT", "") + "/emulator/deployments"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            listed = json.loads(response.read()).get("deployments", [])
    except (OSError, ValueError):
        return []
    return [int(d["pid"]) for d in listed if isinstance(d, dict) and isinstance(d.get("pid"), int)]


def _pid_alive(pid: int) -> bool:
    return part_alive(PartState(pid=pid, log=""))


def _staged(name: str) -> bool:
    return any(name in stage for stage in STOP_STAGES)


def _grace(name: str) -> float:
    # The Vertex emulator stops every deployment (a vLLM engine each) before it exits.
    return 60.0 if name == "vertex" else 5.0


def status(data_dir: Path) -> tuple[StackState, list[PartStatus]] | None:
    """Each part of the stack in `data_dir`, or None when none was started there."""
    state = read_state(data_dir)
    if state is None:
        return None
    parts = []
    for name, part in state.parts.items():
        alive = part_alive(part)
        probe = ("up" if part.url is None else _probe(part.url)) if alive else "exited"
        answers = probe in ("up", "busy")
        parts.append(PartStatus(name, part.pid, alive, answers, probe, part.url, part.log))
    return state, parts


def running_state(data_dir: Path) -> StackState | None:
    """The state of a stack that still runs in `data_dir`; a stale state file is removed."""
    state = read_state(data_dir)
    if state is None:
        return None
    if any(part_alive(part) for part in state.parts.values()):
        return state
    (data_dir / "stack.json").unlink(missing_ok=True)
    return None


def _fidelity_args(config: StackConfig) -> list[str]:
    return ["--fidelity", config.fidelity, "--time-scale", f"{config.time_scale:g}"]


def vertex_fidelity(config: StackConfig) -> Fidelity:
    """The rules the stack's emulator plays: its preset and time scale, then `vertex_args`."""
    args = vertex_parser().parse_args([*_fidelity_args(config), *config.vertex_args])
    return fidelity_from(args, {})


def _start_background(
    config: StackConfig, env: Mapping[str, str], children: dict[str, Child], urls: dict[str, str]
) -> None:
    """Start the parts that don't depend on each other at once; `up` waits for them afterwards."""
    ports = config.ports
    python = sys.executable
    logs = config.logs_dir
    vertex_argv = [python, "-m", "local.vertex", "--port", str(ports.vertex)]
    vertex_argv += ["--data-dir", str(config.data_dir / "vertex")]
    vertex_argv += [*_fidelity_args(config), *config.vertex_args]
    # Deployments inherit the emulator's environment, as a container inherits its image's.
    vertex_env = {
        "MODELDROP_SERVING_GPU_MEMORY_UTILIZATION": str(config.serving_memory_utilization),
        **env,
    }
    children["vertex"] = start(
        "vertex", vertex_argv, logs / "vertex.log", env=vertex_env, cwd=REPO_ROOT
    )
    urls["vertex"] = (
        f"http://127.0.0.1:{ports.vertex}/v1/projects/{config.project}"
        f"/locations/{config.region}/endpoints"
    )
    for name in FUNCTIONS:
        port = getattr(ports, name)
        argv = [python, "-m", "functions_framework", "--source", str(config.functions_source)]
        argv += ["--target", name, "--signature-type", "cloudevent"]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        # Requests served at once per instance, as terraform's defaults set them on GCP.
        threads = {**env, "THREADS": str(FUNCTION_CONCURRENCY[name])}
        children[name] = start(name, argv, logs / f"{name}.log", env=threads, cwd=REPO_ROOT)
        urls[name] = f"http://127.0.0.1:{port}/"
    argv = [python, "-m", "functions_framework", "--source", str(config.functions_source)]
    argv += ["--target", "gateway", "--signature-type", "http"]
    argv += ["--host", "127.0.0.1", "--port", str(ports.gateway)]
    gateway_env = {**env, "THREADS": str(GATEWAY_THREADS)}
    children["gateway"] = start(
        "gateway", argv, logs / "gateway.log", env=gateway_env, cwd=REPO_ROOT
    )
    urls["gateway"] = f"http://127.0.0.1:{ports.gateway}/"
    bridge_argv = [python, "-m", "local.bridge", "--port", str(ports.bridge)]
    bridge_argv += ["--target", f"http://127.0.0.1:{ports.on_upload}/"]
    children["bridge"] = start("bridge", bridge_argv, logs / "bridge.log", env=env, cwd=REPO_ROOT)
    urls["bridge"] = f"http://127.0.0.1:{ports.bridge}/"


def _pushes(config: StackConfig) -> list[Push]:
    ports, project = config.ports, config.project

    # The path names the topic, so functions-framework's CloudEvent `source` names it as Eventarc's does.
    def url(port: int, topic: str) -> str:
        return f"http://127.0.0.1:{port}/projects/{project}/topics/{topic}"

    return [
        Push(f"{GCS_EVENTS_TOPIC}-bridge", GCS_EVENTS_TOPIC, url(ports.bridge, GCS_EVENTS_TOPIC)),
        Push(f"{COMMANDS_TOPIC}-on-command", COMMANDS_TOPIC, url(ports.on_command, COMMANDS_TOPIC)),
        Push(
            f"{SWEEP_TOPIC}-sweep", SWEEP_TOPIC, url(ports.sweep, SWEEP_TOPIC), ack_deadline_s=540
        ),
    ]


def _wait_ready(name: str, child: Child, url: str, timeout_s: float) -> None:
    """Until `url` answers at all (a cloudevent function answers GET with 405); fail fast if it exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.alive():
            raise ProcessError(
                f"{name} exited with code {child.popen.returncode} before it was ready "
                f"(log: {child.log_path}):\n{child.log_tail(20)}"
            )
        if _answers(url):
            return
        time.sleep(0.1)
    raise ProcessError(
        f"{name} did not answer at {url} within {timeout_s:.0f}s (log: {child.log_path}):\n"
        f"{child.log_tail(20)}"
    )


def _answers(url: str) -> bool:
    """True when something speaks HTTP at `url` with a status below 500."""
    return _probe(url) == "up"


def _probe(url: str) -> str:
    """'up' (an HTTP status below 500), 'busy' (it accepts connections but is serving others: a
    function with one thread in the middle of a sweep), or 'down'."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return "up" if int(response.status) < 500 else "down"
    except urllib.error.HTTPError as error:
        return "up" if error.code < 500 else "down"
    except TimeoutError:
        return "busy"
    except urllib.error.URLError as error:
        return "busy" if isinstance(error.reason, TimeoutError) else "down"
    except OSError:
        return "down"


def _create_bucket(storage_host: str, project: str, bucket: str) -> None:
    request = urllib.request.Request(
        f"{storage_host}/storage/v1/b?project={project}",
        data=json.dumps({"name": bucket}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as error:
        if error.code != 409:  # 409: it exists (a persistent data folder)
            raise StackError(f"could not create bucket {bucket}: HTTP {error.code}") from error


def _check_ports_free(config: StackConfig) -> None:
    busy = []
    for name, port in config.ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(f"{port} ({name})")
    if busy:
        raise StackError(
            f"port(s) in use: {', '.join(busy)}; stop what holds them or choose other ports "
            "(`modeldrop local up --help`)"
        )


def _part(child: Child, url: str | None) -> PartState:
    port = int(url.split(":")[2].split("/")[0]) if url else None
    return PartState(
        pid=child.pid,
        start_ticks=process_start_ticks(child.pid),
        port=port,
        url=url,
        log=str(child.log_path),
    )


__all__ = ["StackConfig", "StackError", "StackState", "down", "running_state", "status", "up"]
