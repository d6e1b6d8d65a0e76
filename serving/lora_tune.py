"""Tune vLLM's LoRA kernels (shrink, expand) for one model's shapes on this GPU.

`python -m serving.lora_tune --model DIR --out FOLDER [--rank 16 --max-loras 10]` times every
candidate kernel config against vLLM's default for the attention projections' LoRA shapes of the
model in DIR (its config.json: q/k/v as one three-slice op, o as one), at a range of token counts,
with CUDA graphs (as the engine runs decode), and writes the fastest per shape in vLLM's own
format (`<GPU>_SHRINK.json`, `<GPU>_EXPAND_TRUE.json`; vLLM's lora/ops/triton_ops/README_TUNING.md).
Point a deployment at FOLDER with `VLLM_TUNED_CONFIG_FOLDER` (the container passes the
environment to its engine). Each config's output is checked against the default config's.
Needs CUDA; nothing here runs on the CPU.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Shape:
    """One LoRA op of the model: shrink (hidden -> rank) or expand (rank -> out), with its slices."""

    op: str  # "shrink" | "expand"
    name: str
    k: int  # shrink: the input width; expand: the rank
    outs: tuple[int, ...]  # per slice: shrink: the rank; expand: the slice's output width


def shapes(config: dict[str, Any], rank: int) -> list[Shape]:
    """The LoRA ops of the model's linear layers as vLLM builds them: q, k, v as one three-slice
    op, o, gate and up as one two-slice op, down. vLLM looks a file's slice count up exactly (a
    count missing from the file is a KeyError in the engine), so every count the model has is in."""
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // heads)
    inner = int(config.get("intermediate_size") or 4 * hidden)
    q, kv = heads * head_dim, kv_heads * head_dim
    return [
        Shape("shrink", "qkv_proj", hidden, (rank,) * 3),
        Shape("expand", "qkv_proj", rank, (q, kv, kv)),
        Shape("shrink", "o_proj", q, (rank,)),
        Shape("expand", "o_proj", rank, (hidden,)),
        Shape("shrink", "gate_up_proj", hidden, (rank,) * 2),
        Shape("expand", "gate_up_proj", rank, (inner, inner)),
        Shape("shrink", "down_proj", inner, (rank,)),
        Shape("expand", "down_proj", rank, (hidden,)),
    ]


def candidates(shape: Shape) -> Iterator[dict[str, Any]]:
    """The search space (README_TUNING.md's), narrowed to what can win for these shapes: a shrink's
    splits cover its input in one or two turns of the K loop; an expand's K is the rank."""
    base = {"num_ctas": 1, "max_nreg": None, "group_size_m": 8, "num_warps": 4, "num_stages": 2}
    if shape.op == "shrink":
        block_n = max(16, 1 << (shape.outs[0] - 1).bit_length())
        for block_m, block_k, split_k in itertools.product(
            (16, 32, 64), (64, 128, 256), (1, 2, 4, 8, 16, 32, 64)
        ):
            if shape.k / 2 <= block_k * split_k <= 2 * shape.k or (
                block_k * split_k >= shape.k and split_k == 1
            ):
                yield {
                    **base,
                    "block_m": block_m,
                    "block_n": block_n,
                    "block_k": block_k,
                    "split_k": split_k,
                }
    else:
        block_k = max(16, 1 << (shape.k - 1).bit_length())
        for block_m, block_n in itertools.product((16, 32, 64), (32, 64, 128, 256)):
            yield {**base, "block_m": block_m, "block_n": block_n, "block_k": block_k}


class Bench:
    """Inputs for one shape at one token count, and a runner that takes a kernel config."""

    def __init__(self, shape: Shape, m: int, max_loras: int, active: int, dtype: Any) -> None:
        import torch
        from vllm.lora.ops.triton_ops.lora_kernel_metadata import LoRAKernelMeta

        self.shape, self.m = shape, m
        gen = torch.Generator(device="cuda").manual_seed(m)

        def rand(*size: int, kind: Any = dtype) -> Any:
            return torch.randn(*size, generator=gen, device="cuda", dtype=kind) * 0.05

        slices = len(shape.outs)
        if shape.op == "shrink":
            self.inputs = rand(m, shape.k)
            self.weights = [rand(max_loras, shape.outs[0], shape.k) for _ in range(slices)]
            self.output = torch.zeros(slices, m, shape.outs[0], device="cuda", dtype=torch.float32)
        else:
            self.inputs = rand(slices, m, shape.k, kind=torch.float32)
            self.weights = [rand(max_loras, out, shape.k) for out in shape.outs]
            self.output = torch.zeros(m, sum(shape.outs), device="cuda", dtype=dtype)
        mapping = torch.arange(m, device="cuda", dtype=torch.int32) % active
        self.meta = LoRAKernelMeta.make(max_loras, m, "cuda")
        self.meta.prepare_tensors(mapping)

    def run(self, config: dict[str, Any]) -> None:
        from vllm.lora.ops.triton_ops import lora_expand_op, lora_shrink_op

        meta = self.meta.meta_args(self.m, False)
        if self.shape.op == "shrink":
            with _config(lora_shrink_op, config):
                lora_shrink_op._lora_shrink(self.inputs, self.weights, self.output, *meta, 1.0)
        else:
            with _config(lora_expand_op, config):
                lora_expand_op._lora_expand(
                    self.inputs, self.weights, self.output, *meta, offset_start=0, add_inputs=True
                )


class _config:
    """Make `module`'s get_lora_op_configs answer `config` for the duration."""

    def __init__(self, module: Any, config: dict[str, Any]) -> None:
        self.module, self.config = module, config

    def __enter__(self) -> None:
        self.saved = self.module.get_lora_op_configs
        self.module.get_lora_op_configs = lambda *a, **k: self.config

    def __exit__(self, *exc: object) -> None:
        self.module.get_lora_op_configs = self.saved


def default_config(shape: Shape, m: int, max_loras: int) -> dict[str, Any]:
    """vLLM's own choice when no tuned file is found."""
    from vllm.lora.ops.triton_ops import utils

    utils.load_lora_op_config.cache_clear()
    return dict(
        utils.get_lora_op_configs.__wrapped__(
            shape.op,
            max_loras=max_loras + 1,
            batch=m,
            hidden_size=shape.k if shape.op == "shrink" else max(shape.outs),
            rank=shape.outs[0] if shape.op == "shrink" else shape.k,
            num_slices=len(shape.outs),
            add_inputs=True if shape.op == "expand" else None,
        )
    )


def timed(bench: Bench, config: dict[str, Any]) -> float:
    """Microseconds per call, replayed in a CUDA graph (no launch overhead, as in decode)."""
    import triton.testing  # type: ignore[import-untyped]

    return 1000 * float(
        triton.testing.do_bench_cudagraph(lambda: bench.run(config), rep=20, return_mode="median")
    )


def output_of(bench: Bench, config: dict[str, Any]) -> Any:
    bench.output.zero_()
    bench.run(config)
    return bench.output.clone()


def tune(
    shape: Shape,
    m: int,
    max_loras: int,
    active: int,
    dtype: Any,
    search: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The best config for `shape` at `m` tokens, with its time and the default's; vLLM's default
    alone (untimed) when `search` is off."""
    import torch

    default = default_config(shape, m, max_loras)
    if not search:
        return {"config": default, "us": None, "default_us": None}
    bench = Bench(shape, m, max_loras, active, dtype)
    expected = output_of(bench, default)
    best, best_us, tried, failed = default, timed(bench, default), 0, 0
    default_us = best_us
    for config in candidates(shape):
        try:
            if not torch.allclose(output_of(bench, config), expected, rtol=2e-2, atol=2e-2):
                failed += 1
                continue
            us = timed(bench, config)
        except Exception:  # a config this GPU can't run (shared memory, registers)
            failed += 1
            continue
        tried += 1
        if us < best_us:
            best, best_us = config, us
    log(
        f"{shape.op:6} {shape.name:12} m={m:<5} default {default_us:7.2f} us  best {best_us:7.2f} us "
        f"({default_us / best_us:4.2f}x; {tried} timed, {failed} refused)"
    )
    return {"config": best, "us": best_us, "default_us": default_us}


def file_name(gpu: str, op: str) -> str:
    """vLLM's file name for `op` on `gpu` (utils.load_lora_op_config): spaces and dashes as _."""
    gpu = gpu.replace(" ", "_").replace("-", "_")
    return f"{gpu}_SHRINK.json" if op == "shrink" else f"{gpu}_EXPAND_TRUE.json"


def tables(results: list[tuple[Shape, int, dict[str, Any]]], max_loras: int) -> dict[str, Any]:
    """vLLM's layout: [max_loras + 1][num_slices][m][k][n] -> config, per op."""
    out: dict[str, Any] = {"shrink": {}, "expand": {}}
    # Two modules can share a key (o_proj's and down_proj's expand): a searched config wins.
    ordered = sorted(results, key=lambda r: r[2].get("us") is not None)
    for shape, m, result in ordered:
        n = shape.outs[0] if shape.op == "shrink" else max(shape.outs)
        slot = out[shape.op].setdefault(str(max_loras + 1), {}).setdefault(str(len(shape.outs)), {})
        slot.setdefault(str(m), {}).setdefault(str(shape.k), {})[str(n)] = {
            k: v for k, v in result["config"].items() if v is not None
        }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="folder with the model's config.json")
    parser.add_argument("--out", type=Path, required=True, help="VLLM_TUNED_CONFIG_FOLDER to write")
    parser.add_argument("--rank", type=int, default=16, help="the deployment's --max-lora-rank")
    parser.add_argument("--max-loras", type=int, default=10, help="the deployment's --max-loras")
    parser.add_argument("--active", type=int, default=0, help="adapters in a batch (max-loras)")
    parser.add_argument("--tokens", default="1,16,64,256,1024,4096", help="token counts to tune")
    parser.add_argument(
        "--modules",
        default="qkv_proj,o_proj",
        help="modules to search (the adapters' targets); the others get vLLM's default configs",
    )
    parser.add_argument(
        "--budget-s", type=float, default=280, help="past this, the rest get vLLM's defaults"
    )
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args(argv)

    import os

    import torch

    os.environ.pop("VLLM_TUNED_CONFIG_FOLDER", None)  # the defaults are vLLM's own
    config = json.loads((Path(args.model) / "config.json").read_text())
    config = config.get("text_config", config)
    dtype = getattr(torch, args.dtype)
    active = args.active or args.max_loras
    searched = set(args.modules.split(","))
    gpu = torch.cuda.get_device_name()
    started = time.monotonic()
    results = []
    print(f"tuning LoRA kernels on {gpu}: rank {args.rank}, {args.max_loras} slots", flush=True)
    for shape in shapes(config, args.rank):
        for m in (int(t) for t in args.tokens.split(",")):
            search = shape.name in searched and time.monotonic() - started < args.budget_s
            result = tune(shape, m, args.max_loras, active, dtype, search, _print)
            results.append((shape, m, result))
    args.out.mkdir(parents=True, exist_ok=True)
    for op, table in tables(results, args.max_loras).items():
        (args.out / file_name(gpu, op)).write_text(json.dumps(table, indent=1, sort_keys=True))
    summary = {
        "gpu": gpu,
        "rank": args.rank,
        "max_loras": args.max_loras,
        "seconds": round(time.monotonic() - started, 1),
        "results": [
            {
                "op": s.op,
                "module": s.name,
                "m": m,
                "us": r["us"] and round(r["us"], 2),
                "default_us": r["default_us"] and round(r["default_us"], 2),
                "config": r["config"],
            }
            for s, m, r in results
        ],
    }
    (args.out / "tuning.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.out} in {summary['seconds']} s", flush=True)


def _print(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    main()
