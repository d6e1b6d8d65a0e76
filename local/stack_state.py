"""The local stack's configuration and its state file: what runs, on which ports, with which PIDs."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

STATE_NAME = "stack.json"
REPO_ROOT = Path(__file__).resolve().parent.parent

# Names the code, the stack and terraform share (docs/architecture.md).
WEIGHTS_BUCKET = "modeldrop-weights"
STATE_BUCKET = "modeldrop-state"
COMMANDS_TOPIC = "modeldrop-commands"
RESULTS_TOPIC = "modeldrop-results"
SWEEP_TOPIC = "modeldrop-sweep"
DEAD_LETTER_TOPIC = "modeldrop-dead-letter"
# The sweep drains this one (a failed result for each command in it); the topic's own keeps copies.
DEAD_LETTER_ANSWERS = "modeldrop-dead-letter-answers"
GCS_EVENTS_TOPIC = "modeldrop-gcs-events"
# The emulator maps an image whose path ends in /serving to `python -m serving`.
LOCAL_SERVING_IMAGE = "localhost/modeldrop/serving:local"


class StackError(RuntimeError):
    """The local stack is missing, already running, or a part failed; the message says which."""


@dataclass(frozen=True)
class Ports:
    """One port per part; every one binds 127.0.0.1."""

    pubsub: int = 8085
    gcs: int = 4443
    vertex: int = 8090
    on_upload: int = 8091
    on_command: int = 8092
    sweep: int = 8093
    bridge: int = 8094
    gcs_front: int = 8095  # fake-gcs-server with the JSON API calls gcloud needs (local.gcs_front)
    gateway: int = 8096  # the front door (an HTTP function)

    def items(self) -> list[tuple[str, int]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]

    def with_free_ports(self) -> Ports:
        from local.processes import free_port

        return replace(self, **{name: free_port() for name, _ in self.items()})


@dataclass(frozen=True)
class StackConfig:
    """How to run the stack: where it keeps its data, its ports, and the functions' settings."""

    data_dir: Path
    ports: Ports = field(default_factory=Ports)
    project: str = "modeldrop-local"
    region: str = "us-central1"
    tick_s: float = 10.0
    default_idle_ttl: str = "30m"
    deploy_grace: str = "60s"
    # How long the gateway holds a request through a wake (20 min on Google Cloud).
    wake_timeout: str = "3m"
    memory_gcs: bool = False
    # vLLM reserves this share of memory per deployment; on the CPU backend it is a share of RAM,
    # and vLLM's 0.9 default leaves nothing for a second engine or the rest of the stack.
    serving_memory_utilization: float = 0.15
    # How the Vertex emulator plays Vertex: Google's documented rules and modelled durations
    # (a CPU deploy 600 s, an undeploy 120 s, Monitoring 60 s samples + 180 s ingestion), scaled.
    # `legacy` with time scale 0 is the old instant, forgiving emulator.
    fidelity: str = "faithful"
    time_scale: float = 0.01
    # Extra flags for the Vertex emulator: --image-map, --fault, --stockout, --rule, ...
    vertex_args: tuple[str, ...] = ()
    # The functions' entry points; another checkout's for trying changes against a running stack.
    functions_source: Path = REPO_ROOT / "functions" / "main.py"

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_NAME

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"


def default_data_dir(env: Mapping[str, str] = os.environ) -> Path:
    """$MODELDROP_LOCAL_DIR; else `.local/` in a source checkout; else the user's data folder."""
    if env.get("MODELDROP_LOCAL_DIR"):
        return Path(env["MODELDROP_LOCAL_DIR"]).expanduser().resolve()
    if (REPO_ROOT / ".git").exists():
        return REPO_ROOT / ".local"
    base = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "modeldrop" / "local"


class PartState(BaseModel):
    """One running part: its process and where it answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pid: int
    start_ticks: int | None = None  # /proc start time: guards `down` against a reused PID
    port: int | None = None
    url: str | None = None
    log: str


class StackState(BaseModel):
    """What `up` wrote: read by `down`, `status` and the CLI's local profile from any process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = 1
    project: str
    region: str
    data_dir: str
    started_at: datetime
    parts: dict[str, PartState]
    # The variables a client needs: PUBSUB_EMULATOR_HOST, STORAGE_EMULATOR_HOST, MODELDROP_*.
    env: dict[str, str]

    @property
    def pubsub_host(self) -> str:
        return self.env["PUBSUB_EMULATOR_HOST"]

    @property
    def storage_host(self) -> str:
        return self.env["STORAGE_EMULATOR_HOST"]

    @property
    def vertex_endpoint(self) -> str:
        return self.env["MODELDROP_VERTEX_API_ENDPOINT"]

    @property
    def gateway_url(self) -> str | None:
        """The front door's base URL (None for a stack started before it had one)."""
        part = self.parts.get("gateway")
        return part.url.rstrip("/") if part is not None and part.url else None


def read_state(data_dir: Path) -> StackState | None:
    """The state file in `data_dir`, or None when no stack was started there."""
    path = data_dir / STATE_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return StackState.model_validate_json(raw)
    except ValidationError as error:
        raise StackError(
            f"{path} is not a stack state file ({error.error_count()} problems)"
        ) from error


def write_state(data_dir: Path, state: StackState) -> None:
    """Write atomically, so a reader never sees half a file."""
    path = data_dir / STATE_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.model_dump(mode="json"), indent=2) + "\n")
    os.replace(tmp, path)


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def part_alive(part: PartState) -> bool:
    """True when the PID runs and is still the process `up` started (not a reused PID)."""
    try:
        os.kill(part.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        after_name = Path(f"/proc/{part.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return part.start_ticks is None
    if after_name[0] in ("Z", "X"):  # exited, not yet reaped by its parent
        return False
    return part.start_ticks is None or int(after_name[19]) == part.start_ticks
