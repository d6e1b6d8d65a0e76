"""Serving settings, read once from argv and the environment (AIP_* from Vertex, MODELDROP_SERVING_*)."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "MODELDROP_SERVING_"
DTYPES = ("auto", "bfloat16", "float16", "float32", "half", "float")


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


@dataclass(frozen=True)
class Settings:
    """Everything the container needs, validated; build it with `Settings.load(argv, env)`."""

    model: str
    vertex: Vertex = field(default_factory=Vertex)
    served_model_name: str | None = None
    host: str = "0.0.0.0"  # Vertex reaches the container on all interfaces
    port: int = 8080
    # engine
    dtype: str = "auto"
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    max_num_seqs: int | None = None
    quantization: str | None = None
    seed: int = 0
    enforce_eager: bool = False
    trust_remote_code: bool = False
    allow_unsafe_weights: bool = False
    # weights
    cache_dir: Path = Path(tempfile.gettempdir()) / "modeldrop-weights"
    download_workers: int = 8
    # limits
    max_body_bytes: int = 4 * 1024 * 1024
    max_instances: int = 64
    max_tokens_limit: int = 4096
    default_max_tokens: int = 256
    max_n: int = 8
    # lifecycle and logs
    drain_grace_s: float = 30.0
    log_level: str = "INFO"

    @property
    def model_name(self) -> str:
        """The name clients put in `model` and /v1/models lists."""
        if self.served_model_name:
            return self.served_model_name
        parts = [part for part in self.model.split("/") if part and part != "gs:"]
        # The weights bucket layout is models/<model>/<version>/: name the model, not the version.
        if len(parts) >= 3 and parts[-3] == "models":
            return parts[-2]
        return parts[-1] if parts else self.model

    @classmethod
    def load(
        cls, argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ
    ) -> Settings:
        """Parse flags, then fill what they leave out from MODELDROP_SERVING_* and AIP_* variables."""
        args = vars(_parser().parse_args(argv))
        vertex = Vertex.from_env(env)
        values: dict[str, Any] = {}
        for option in OPTIONS:
            env_name = ENV_PREFIX + option.name.upper()
            if args.get(option.name) is not None:
                raw, source = args[option.name], "--" + option.name.replace("_", "-")
            elif env.get(env_name, "").strip():
                raw, source = env[env_name].strip(), env_name
            else:
                continue
            values[option.name] = option.parse(raw, source) if isinstance(raw, str) else raw
        model = values.pop("model", None) or vertex.storage_uri
        if not model:
            raise SettingsError(
                "no model: pass --model DIR|gs://BUCKET/PATH, or set "
                f"{ENV_PREFIX}MODEL or AIP_STORAGE_URI"
            )
        values.setdefault("port", vertex.http_port)
        settings = cls(model=model, vertex=vertex, **values)
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse combinations no engine could serve, naming the setting."""
        if not (0.0 < self.gpu_memory_utilization <= 1.0):
            raise SettingsError(
                f"gpu-memory-utilization must be in (0, 1], got {self.gpu_memory_utilization}"
            )
        if self.dtype not in DTYPES:
            raise SettingsError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.default_max_tokens > self.max_tokens_limit:
            raise SettingsError(
                f"default-max-tokens ({self.default_max_tokens}) exceeds "
                f"max-tokens-limit ({self.max_tokens_limit})"
            )
        if not self.model.startswith("gs://") and "://" in self.model:
            raise SettingsError(f"model must be a local folder or gs:// URI, got {self.model!r}")


@dataclass(frozen=True)
class Option:
    name: str
    parse_text: Callable[[str, str], Any]
    help: str
    is_switch: bool = False

    def parse(self, raw: str, source: str) -> Any:
        return self.parse_text(raw, source)


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


def _float(raw: str, source: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{source} must be a number, got {raw!r}") from None


def _positive_float(raw: str, source: str) -> float:
    value = _float(raw, source)
    if value <= 0:
        raise SettingsError(f"{source} must be positive, got {raw!r}")
    return value


def _bool(raw: str, source: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{source} must be true or false, got {raw!r}")


def _text(raw: str, source: str) -> str:
    return raw


def _path(raw: str, source: str) -> Path:
    return Path(raw)


def _level(raw: str, source: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError(
            f"{source} must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}"
        )
    return level


def _port(raw: str, source: str) -> int:
    value = _int(1)(raw, source)
    if value > 65535:
        raise SettingsError(f"{source} must be a TCP port (1-65535), got {value}")
    return value


def _route(raw: str, source: str) -> str:
    if not raw.startswith("/"):
        raise SettingsError(f"{source} must be a path starting with '/', got {raw!r}")
    return raw


OPTIONS: tuple[Option, ...] = (
    Option(
        "model", _text, "weights: a local folder or gs://BUCKET/PATH (default: AIP_STORAGE_URI)"
    ),
    Option(
        "served_model_name",
        _text,
        "model name clients use (default: <model> of .../models/<model>/<version>, else the folder name)",
    ),
    Option("host", _text, "address to listen on (default 0.0.0.0)"),
    Option("port", _port, "port to listen on (default: AIP_HTTP_PORT or 8080)"),
    Option("dtype", _text, "weights and activations dtype (default auto)"),
    Option("max_model_len", _int(16), "context length (default: the model's)"),
    Option("gpu_memory_utilization", _float, "share of GPU memory vLLM may take (default 0.9)"),
    Option("tensor_parallel_size", _int(1), "GPUs to shard the model over (default 1)"),
    Option("max_num_seqs", _int(1), "most sequences in one batch (default: vLLM's)"),
    Option("quantization", _text, "quantization method, e.g. awq, gptq, fp8 (default none)"),
    Option("seed", _int(0), "engine random seed (default 0)"),
    Option("enforce_eager", _bool, "skip CUDA graphs (default false)", is_switch=True),
    Option(
        "trust_remote_code",
        _bool,
        "run code shipped with the model (default false)",
        is_switch=True,
    ),
    Option(
        "allow_unsafe_weights",
        _bool,
        "load pickle-based weights (.bin/.pt) as well as safetensors (default false)",
        is_switch=True,
    ),
    Option("cache_dir", _path, "where gs:// weights are downloaded"),
    Option("download_workers", _int(1), "parallel downloads from gs:// (default 8)"),
    Option("max_body_bytes", _int(1024), "largest request body accepted (default 4 MiB)"),
    Option("max_instances", _int(1), "most instances in one predict request (default 64)"),
    Option("max_tokens_limit", _int(1), "largest max_tokens a request may ask for (default 4096)"),
    Option("default_max_tokens", _int(1), "max_tokens when a request gives none (default 256)"),
    Option("max_n", _int(1), "largest n (choices per prompt) a request may ask for (default 8)"),
    Option(
        "drain_grace_s",
        _positive_float,
        "seconds in-flight requests get after SIGTERM (default 30)",
    ),
    Option("log_level", _level, "log level (default INFO)"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description="Serve a model on vLLM's async engine behind Vertex AI's container contract "
        "and the OpenAI API. Every flag can also be set as MODELDROP_SERVING_<FLAG>.",
    )
    for option in OPTIONS:
        flag = "--" + option.name.replace("_", "-")
        if option.is_switch:
            parser.add_argument(
                flag, action="store_const", const=True, default=None, help=option.help
            )
        else:
            parser.add_argument(flag, default=None, help=option.help)
    return parser
