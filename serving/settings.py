"""Serving settings, read once from argv and the environment (AIP_* from Vertex, MODELDROP_SERVING_*)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from serving import flags, state_store


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the flag or variable."""


@dataclass(frozen=True)
class Vertex:
    """What Vertex AI tells a custom container through AIP_* variables (defaults when run elsewhere)."""

    http_port: int = 8080
    health_route: str = "/health"
    predict_route: str = "/predict"
    storage_uri: str | None = None
    mode: str = "PREDICTION"
    mode_version: str | None = None
    framework: str | None = None
    deployed_model_id: str | None = None
    endpoint_id: str | None = None
    project_number: str | None = None
    machine_type: str | None = None
    accelerator_type: str | None = None
    model_name: str | None = None
    version_name: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Vertex:
        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        port_text = text("AIP_HTTP_PORT")
        port = _port(port_text, "AIP_HTTP_PORT") if port_text else 8080
        return cls(
            http_port=port,
            health_route=_route(text("AIP_HEALTH_ROUTE") or "/health", "AIP_HEALTH_ROUTE"),
            predict_route=_route(text("AIP_PREDICT_ROUTE") or "/predict", "AIP_PREDICT_ROUTE"),
            storage_uri=text("AIP_STORAGE_URI"),
            mode=text("AIP_MODE") or "PREDICTION",
            mode_version=text("AIP_MODE_VERSION"),
            framework=text("AIP_FRAMEWORK"),
            deployed_model_id=text("AIP_DEPLOYED_MODEL_ID"),
            endpoint_id=text("AIP_ENDPOINT_ID"),
            project_number=text("AIP_PROJECT_NUMBER"),
            machine_type=text("AIP_MACHINE_TYPE"),
            accelerator_type=text("AIP_ACCELERATOR_TYPE"),
            model_name=text("AIP_MODEL_NAME"),
            version_name=text("AIP_VERSION_NAME"),
        )


def _int(minimum: int) -> Callable[[str, str], int]:
    def parse(raw: str, source: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{source} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"{source} must be at least {minimum}, got {value}")
        return value

    return parse


def _port(raw: str, source: str) -> int:
    value = _int(1)(raw, source)
    if value > 65535:
        raise SettingsError(f"{source} must be a TCP port (1-65535), got {value}")
    return value


def _route(raw: str, source: str) -> str:
    if not raw.startswith("/"):
        raise SettingsError(f"{source} must be a path starting with '/', got {raw!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    """Everything the container needs, validated; build it with `Settings.load(argv, env)`.

    `args` is vLLM's own namespace (every engine and server option, as `vllm serve` parses them);
    the other fields are the container's: Vertex's variables, limits, weights and state.
    """

    args: argparse.Namespace
    model: str  # where the weights are: a local folder or gs://
    vertex: Vertex = field(default_factory=Vertex)
    host: str = "0.0.0.0"  # Vertex reaches the container on all interfaces
    port: int = 8080
    allow_unsafe_weights: bool = False
    cache_dir: Path = Path("/tmp/modeldrop-weights")
    download_workers: int = 8
    max_body_bytes: int = 4 * 1024 * 1024
    max_json_depth: int = 64
    max_instances: int = 64
    drain_grace_s: float = 30.0
    log_level: str = "INFO"
    unused_env: tuple[str, ...] = ()
    # activity records and adapters (CONTRACTS.md)
    state_bucket: str | None = None
    activity_period_s: float = 30.0
    replica: str = "replica"
    model_key: str | None = None  # MODELDROP_MODEL: the registry's model name, for adapters
    adapter_cache_size: int = 16
    # vLLM's compile cache in the state bucket (compile_cache.py): on unless --no-compile-cache
    compile_cache: bool = False
    compile_cache_root: Path = Path("~/.cache/vllm")  # VLLM_CACHE_ROOT, as vLLM resolves it
    compile_cache_max_bytes: int = 2 * 1024**3
    # Set for the engine's processes where unset: Triton's cache (vLLM's Triton kernels, compiled
    # on first use) defaults to ~/.triton/cache and inductor's, where vLLM does not set it (its
    # CPU and stock torch.compile modes), to /tmp/torchinductor_<user>: pointed inside the root,
    # they are saved too.
    compile_cache_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        """The name clients put in `model` and /v1/models lists (the first served name)."""
        names = self.args.served_model_name
        return str(names[0]) if names else served_name(self.model)

    @property
    def trust_remote_code(self) -> bool:
        return bool(self.args.trust_remote_code)

    @classmethod
    def load(
        cls, argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ
    ) -> Settings:
        """Parse MODELDROP_SERVING_* variables, then the command line (which wins over them), then
        the deployment's own args from the state bucket (which win over both), with vLLM's parser."""
        vertex = Vertex.from_env(env)
        state_bucket = env.get("MODELDROP_STATE_BUCKET", "").strip() or None
        deployment = deployment_args(vertex, state_bucket)
        try:
            from_env, unused = flags.env_argv(flags.parser(), env)
            command_line = list(sys.argv[1:] if argv is None else argv)
            args = flags.parse([*from_env, *command_line, *deployment])
        except flags.FlagError as error:
            raise SettingsError(str(error)) from None
        model = args.model_tag or args.model or vertex.storage_uri
        if not model:
            raise SettingsError(
                "no model: pass --model DIR|gs://BUCKET/PATH, or set "
                f"{flags.ENV_PREFIX}MODEL or AIP_STORAGE_URI"
            )
        if not model.startswith("gs://") and "://" in model:
            raise SettingsError(f"model must be a local folder or gs:// URI, got {model!r}")
        if not args.served_model_name:
            args.served_model_name = [served_name(model)]
        args.model_tag = None
        args.port = args.port or vertex.http_port
        period = env.get("MODELDROP_ACTIVITY_PERIOD", "").strip()
        return cls(
            args=args,
            model=model,
            vertex=vertex,
            host=args.host or "0.0.0.0",
            port=int(args.port),
            allow_unsafe_weights=args.allow_unsafe_weights,
            cache_dir=Path(args.cache_dir),
            download_workers=args.download_workers,
            max_body_bytes=args.max_body_bytes,
            max_json_depth=args.max_json_depth,
            max_instances=args.max_instances,
            drain_grace_s=args.drain_grace_s,
            log_level=str(getattr(args, "log_level", None) or "INFO"),  # vLLM's --log-level
            unused_env=tuple(unused),
            state_bucket=state_bucket,
            activity_period_s=_period(period) if period else 30.0,
            replica=env.get("MODELDROP_REPLICA_ID", "").strip() or os.uname().nodename,
            model_key=env.get("MODELDROP_MODEL", "").strip() or None,
            adapter_cache_size=args.adapter_cache_size,
            compile_cache=bool(state_bucket) and not args.no_compile_cache,
            compile_cache_root=cache_root(env),
            compile_cache_env={
                name: str(cache_root(env) / folder)
                for name, folder in (
                    ("TRITON_CACHE_DIR", "triton_cache"),
                    ("TORCHINDUCTOR_CACHE_DIR", "inductor_cache"),
                )
                if name not in env
            },
            compile_cache_max_bytes=args.compile_cache_max_bytes,
        )


def deployment_args(vertex: Vertex, state_bucket: str | None) -> list[str]:
    """This deployment's serving args from its state record; none when there is no record.

    Read once at start: an unreadable or malformed record stops the start (health never answers
    200) rather than serving with args the deploy did not ask for. Flags the registration owns are
    refused here too, so a record can't move the weights, the name or the port the Model pins.
    """
    if not (state_bucket and vertex.endpoint_id and vertex.deployed_model_id):
        return []
    name = flags.deployment_args_name(vertex.endpoint_id, vertex.deployed_model_id)
    where = f"{state_bucket.rstrip('/')}/{name}"
    try:
        data = state_store.store_for(state_bucket).read(name)
    except Exception as error:  # any storage failure: the start must not go on without them
        raise SettingsError(
            f"can't read this deployment's serving args at {where}: {type(error).__name__}: {error}"
        ) from None
    if data is None:
        return []
    try:
        record = json.loads(data)
    except ValueError as error:
        raise SettingsError(f"the serving args at {where} are not JSON: {error}") from None
    args = record.get("args") if isinstance(record, dict) else None
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        raise SettingsError(
            f"the serving args at {where} must be an object with an 'args' list of strings"
        )
    try:
        problems = flags.owned(flags.parser().parse_args(args))
    except flags.FlagError as error:
        raise SettingsError(f"the serving args at {where}: {error}") from None
    if problems:
        raise SettingsError(f"the serving args at {where}: {'; '.join(problems)}")
    return args


def cache_root(env: Mapping[str, str]) -> Path:
    """VLLM_CACHE_ROOT as vLLM resolves it (vllm/envs.py): the variable, else $XDG_CACHE_HOME/vllm."""
    root = env.get("VLLM_CACHE_ROOT", "").strip()
    if root:
        return Path(root).expanduser()
    base = env.get("XDG_CACHE_HOME", "").strip() or "~/.cache"
    return Path(base).expanduser() / "vllm"


def served_name(model: str) -> str:
    """models/<model>/<version> serves as <model>; another path as its last part."""
    parts = [part for part in model.split("/") if part and part != "gs:"]
    if len(parts) >= 3 and parts[-3] == "models":
        return parts[-2]
    return parts[-1] if parts else model


def _period(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"MODELDROP_ACTIVITY_PERIOD must be seconds, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"MODELDROP_ACTIVITY_PERIOD must be positive, got {raw!r}")
    return value
