"""The benchmark's adapter mode: random-weight LoRA adapters built locally, a first-request probe and a mix."""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.bench_load import Level, level_requests, percentile, run_async, run_level

MODEL_KEY = "bench-model"  # MODELDROP_MODEL: the records' model
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class AdapterSet:
    """Adapters for one run: `mix` served together, `fresh` each asked once (first-request probe)."""

    mix: tuple[str, ...]
    fresh: tuple[str, ...]
    cache_dir: Path  # the container's --cache-dir: adapters already in cache_dir/adapters/<name>/
    state: Path  # a local-folder state bucket with adapters/<MODEL_KEY>/<name>.json
    folders: Path  # the same adapters, one folder each (vLLM's --lora-modules and its resolver)


def write_adapter(folder: Path, config: dict[str, Any], rank: int, seed: int, base: str) -> None:
    """A random PEFT LoRA adapter on the attention projections of every layer of `config`'s model."""
    import torch
    from safetensors.torch import save_file

    hidden = int(config["hidden_size"])
    heads, kv_heads = int(config["num_attention_heads"]), int(config["num_key_value_heads"])
    head_dim = int(config.get("head_dim") or hidden // heads)
    shapes = {  # (in, out) of each projection
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv_heads * head_dim),
        "v_proj": (hidden, kv_heads * head_dim),
        "o_proj": (heads * head_dim, hidden),
    }
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, Any] = {}
    for layer in range(int(config["num_hidden_layers"])):
        for module in TARGET_MODULES:
            fan_in, fan_out = shapes[module]
            key = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            a = torch.randn(rank, fan_in, generator=generator) * 0.01
            b = torch.randn(fan_out, rank, generator=generator) * 0.01
            tensors[f"{key}.lora_A.weight"] = a.to(torch.bfloat16)
            tensors[f"{key}.lora_B.weight"] = b.to(torch.bfloat16)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,  # vLLM's filesystem resolver matches this to --model
        "r": rank,
        "lora_alpha": 2 * rank,
        "lora_dropout": 0.0,
        "target_modules": list(TARGET_MODULES),
        "bias": "none",
        "fan_in_fan_out": False,
        "modules_to_save": None,
    }
    (folder / "adapter_config.json").write_text(json.dumps(adapter_config))


def prepare(args: argparse.Namespace, work: Path) -> AdapterSet:
    """Build args.adapters + args.first_adapters adapters, laid out for both targets."""
    import shutil

    from serving.weights import crc32c_of

    config = json.loads((Path(args.model) / "config.json").read_text())
    mix = tuple(f"mix-{n}" for n in range(args.adapters))
    fresh = tuple(f"fresh-{n}" for n in range(args.first_adapters))
    folders, cache_dir, state = work / "folders", work / "cache", work / "state"
    records = state / "adapters" / MODEL_KEY
    records.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(mix + fresh, start=1):
        folder = folders / name
        write_adapter(folder, config, args.adapter_rank, seed, str(args.model))
        # The container's disk cache already holds it, as after a download from the bucket.
        shutil.copytree(folder, cache_dir / "adapters" / name, dirs_exist_ok=True)
        files = [
            {"name": p.name, "size": p.stat().st_size, "crc32c": crc32c_of(p)}
            for p in sorted(folder.iterdir())
        ]
        record = {
            "model": MODEL_KEY,
            "name": name,
            "uri": f"gs://bench-weights/models/{MODEL_KEY}/adapters/{name}/",
            "rank": args.adapter_rank,
            "files": files,
            "registered_at": "2026-01-01T00:00:00Z",
        }
        (records / f"{name}.json").write_text(json.dumps(record))
    return AdapterSet(mix, fresh, cache_dir, state, folders)


def server_flags(target: str, adapters: AdapterSet, args: argparse.Namespace) -> list[str]:
    """LoRA flags: the container resolves every adapter by name; vLLM preloads the mix."""
    flags = ["--enable-lora", "--max-lora-rank", str(args.adapter_rank)]
    flags += ["--max-loras", str(max(1, len(adapters.mix)))]
    if target == "container":
        size = len(adapters.mix) + len(adapters.fresh) + 1
        flags += ["--cache-dir", str(adapters.cache_dir), "--adapter-cache-size", str(size)]
        # The state bucket is set for the adapters: no compile-cache upload beside the load.
        return [*flags, "--no-compile-cache"]
    return [*flags, "--lora-modules", *(f"{n}={adapters.folders / n}" for n in adapters.mix)]


def server_env(target: str, adapters: AdapterSet) -> dict[str, str]:
    if target == "container":
        return {
            "MODELDROP_MODEL": MODEL_KEY,
            "MODELDROP_STATE_BUCKET": str(adapters.state),
            "MODELDROP_REPLICA_ID": "bench-0",
        }
    # vLLM's own runtime loading, for its first-request figure: its filesystem resolver plugin.
    fresh = adapters.folders.parent / "vllm-fresh"
    fresh.mkdir(exist_ok=True)
    for name in adapters.fresh:
        link = fresh / name
        if not link.exists():
            link.symlink_to(adapters.folders / name)
    return {
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "1",
        "VLLM_PLUGINS": "lora_filesystem_resolver",
        "VLLM_LORA_RESOLVER_CACHE_DIR": str(fresh),
    }


@dataclass
class AdapterResult:
    """One target's adapter figures."""

    target: str
    first_latency_s: list[float] = field(default_factory=list)  # one per fresh adapter
    first_ttft_s: list[float] = field(default_factory=list)
    base_latency_s: list[float] = field(default_factory=list)  # the same probe on the base model
    first_errors: int = 0
    levels: dict[str, list[Level]] = field(default_factory=dict)  # "base@64", "mix@64": passes

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target, "first_errors": self.first_errors}
        for key in ("first_latency_s", "first_ttft_s", "base_latency_s"):
            values = getattr(self, key)
            out[key] = {
                q: round(percentile(values, p), 4) for q, p in (("p50", 0.5), ("p95", 0.95))
            }
            out[key]["max"] = round(max(values), 4) if values else None
        for key, passes in self.levels.items():
            out[f"{key} tok/s"] = [level.tokens_per_s for level in passes]
            if key.startswith("mix@") and (base := self.levels.get("base" + key[3:])):
                mix_total = sum(level.tokens_per_s for level in passes)
                base_total = sum(level.tokens_per_s for level in base)
                out[f"mix/base{key[3:]}"] = round(mix_total / base_total, 3)
        return out


def _probe(url: str, model: str, prompt: list[int], tokens: int) -> Level:
    return run_async(run_level(url, 1, [prompt], tokens, True, (model,)))  # type: ignore[no-any-return]


def measure(
    target: str,
    url: str,
    adapters: AdapterSet,
    args: argparse.Namespace,
    vocab: int,
    rng: random.Random,
) -> AdapterResult:
    """First request to each fresh adapter (base probes between), then base and mix, ABBA at each level."""
    from serving.bench_load import make_prompts

    result = AdapterResult(target)
    tokens = args.first_output_tokens
    for name in adapters.fresh:
        base_prompt, prompt = make_prompts(2, args.prompt_tokens, vocab, rng)
        result.base_latency_s.append(_probe(url, "bench", base_prompt, tokens).latency_p50_s)
        level = _probe(url, name, prompt, tokens)
        if level.errors:
            result.first_errors += 1
            continue
        result.first_latency_s.append(level.latency_p50_s)
        result.first_ttft_s.append(level.ttft_p50_s)
    # Each mixed adapter once, so the levels measure serving, not loading.
    warm = make_prompts(len(adapters.mix), args.prompt_tokens, vocab, rng)
    run_async(run_level(url, len(adapters.mix), warm, 4, True, adapters.mix))
    for concurrency in args.concurrency:
        count = level_requests(concurrency, args)
        for kind in ("base", "mix", "mix", "base"):  # ABBA: drift within the run cancels
            models = adapters.mix if kind == "mix" else ("bench",)
            prompts = make_prompts(count, args.prompt_tokens, vocab, rng)
            level = run_async(
                run_level(url, concurrency, prompts, args.output_tokens, True, models)
            )
            result.levels.setdefault(f"{kind}@{concurrency}", []).append(level)
            print(
                f"   {kind:<4} c={concurrency:<4} {level.tokens_per_s:>10.1f} tok/s  "
                f"p50 {level.latency_p50_s:.3f} s  errors {level.errors}",
                flush=True,
            )
    print(f"   {json.dumps(result.summary())}", flush=True)
    return result
