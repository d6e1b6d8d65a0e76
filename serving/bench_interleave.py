"""Interleaved mode of the serving benchmark: every target up at once, the levels taken in turns.

Run one after the other, two servers also meet different moments of the machine (clocks, the host's
other tenants, the page cache), and on the lent GPUs the one measured second ran ~10% slower in both
orders: at concurrency 1 and 16, where both are bound by the same engine, that drift is larger than
any difference between them. Here both targets start on the same GPU (each with its share of memory:
vLLM's --gpu-memory-utilization is a per-instance limit) and stay up; each round runs every level on
each target in turn, in ABBA order (A B at even rounds, B A at odd ones), the same prompts to both.
Only one target is under load at any moment. Ratios are per round and pooled as a geometric mean.
Each level also records the CPU time its API server process (the one started, not its engine core)
spent per output token, from /proc: where throughput differs, it says whether the HTTP side costs more.
  python -m serving.bench --model DIR --targets container,vllm --interleave 4 \
      --gpu-memory-utilization 0.44 --concurrency 1,16
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from serving.bench_load import (
    Level,
    level_requests,
    make_prompts,
    model_vocab,
    run_async,
    run_level,
)
from serving.startup import proc_stat_fields

Start = Callable[[str], tuple[Any, str, float]]  # target -> (process, url, time to ready)
Stop = Callable[[Any], None]


@dataclass
class InterleavedResult:
    targets: list[str]
    ready_s: dict[str, float]
    # rounds[r][target] = that round's levels for that target, in concurrency order
    rounds: list[dict[str, list[Level]]] = field(default_factory=list)
    # api_cpu_ms[r][target] = per level, the API server process's CPU ms per output token
    api_cpu_ms: list[dict[str, list[float]]] = field(default_factory=list)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far (its children not counted); NaN without /proc."""
    try:
        fields = proc_stat_fields(f"/proc/{pid}/stat")
    except OSError:
        return math.nan
    return (int(fields[14 - 3]) + int(fields[15 - 3])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def per_token_ms(cpu_s: float, tokens: int) -> float:
    return cpu_s * 1000 / tokens if tokens > 0 else math.nan


def order(targets: Sequence[str], round_number: int) -> list[str]:
    """ABBA: the targets as given at even rounds, reversed at odd ones."""
    return list(targets) if round_number % 2 == 0 else list(reversed(targets))


def run(args: argparse.Namespace, vocab: int, start: Start, stop: Stop) -> InterleavedResult:
    targets = list(args.targets)
    processes: list[Any] = []
    urls: dict[str, str] = {}
    pids: dict[str, int] = {}
    ready: dict[str, float] = {}
    result = InterleavedResult(targets, ready)
    try:
        # One at a time: each engine sizes its KV cache from the memory the ones before it left.
        for target in targets:
            print(f"== {target}: starting", flush=True)
            process, url, seconds = start(target)
            processes.append(process)
            urls[target], ready[target] = url, round(seconds, 2)
            pids[target] = process.pid
            print(f"   ready in {seconds:.1f} s", flush=True)
        warm = make_prompts(8, args.prompt_tokens, vocab, random.Random(args.seed))
        for target in targets:  # warm-up, not recorded
            run_async(run_level(urls[target], 4, warm, args.output_tokens, True))
        for number in range(args.interleave):
            taken: dict[str, list[Level]] = {target: [] for target in targets}
            cpu: dict[str, list[float]] = {target: [] for target in targets}
            for concurrency in args.concurrency:
                # The same fresh prompts for every target in this round and level.
                rng = random.Random(f"{args.seed}-{number}-{concurrency}")
                count = level_requests(concurrency, args)
                prompts = make_prompts(count, args.prompt_tokens, vocab, rng)
                for target in order(targets, number):
                    pid = pids[target]
                    before = process_cpu_s(pid)
                    level = run_async(
                        run_level(urls[target], concurrency, prompts, args.output_tokens, True)
                    )
                    taken[target].append(level)
                    cpu[target].append(
                        per_token_ms(process_cpu_s(pid) - before, level.output_tokens)
                    )
                    print(
                        f"   round {number} {target:<9} c={concurrency:<4} "
                        f"{level.tokens_per_s:>10.1f} tok/s  p50 {level.latency_p50_s:.4f} s  "
                        f"ttft p50 {level.ttft_p50_s:.4f} s  "
                        f"api cpu {cpu[target][-1]:.3f} ms/token  errors {level.errors}",
                        flush=True,
                    )
            result.rounds.append(taken)
            result.api_cpu_ms.append(cpu)
    finally:
        for process in reversed(processes):
            stop(process)
    return result


def _ratio(mine: float, theirs: float) -> float:
    return mine / theirs if mine > 0 and theirs > 0 else math.nan


def _geomean(values: list[float]) -> float:
    if any(math.isnan(v) for v in values):
        return math.nan
    return math.exp(statistics.fmean(map(math.log, values)))


def _mean(values: list[float]) -> float:
    return round(statistics.fmean(values), 4) if values else math.nan


def summary(result: InterleavedResult, base: str = "vllm") -> list[dict[str, Any]]:
    """Per target other than `base` and per concurrency: each round's ratio and their pooled figures."""
    rows: list[dict[str, Any]] = []
    if base not in result.targets or not result.rounds:
        return rows
    for target in (t for t in result.targets if t != base):
        for index, level in enumerate(result.rounds[0][target]):
            pairs = [(r[target][index], r[base][index]) for r in result.rounds]
            # A level whose requests all failed has no rate: its ratio, and the pool, are NaN.
            ratios = [_ratio(mine.tokens_per_s, theirs.tokens_per_s) for mine, theirs in pairs]
            added = [(mine.latency_p50_s - theirs.latency_p50_s) * 1000 for mine, theirs in pairs]
            cpu = [(r[target][index], r[base][index]) for r in result.api_cpu_ms]
            rows.append(
                {
                    "target": target,
                    "concurrency": level.concurrency,
                    "ratios": [round(r, 4) for r in ratios],
                    "geomean": round(_geomean(ratios), 4),
                    "min": round(min(ratios), 4),
                    "max": round(max(ratios), 4),
                    "p50_added_ms": round(statistics.median(added), 2),
                    "tokens_per_s": round(statistics.fmean(m.tokens_per_s for m, _ in pairs), 1),
                    "base_tokens_per_s": round(
                        statistics.fmean(b.tokens_per_s for _, b in pairs), 1
                    ),
                    "api_cpu_ms_per_token": _mean([m for m, _ in cpu]),
                    "base_api_cpu_ms_per_token": _mean([b for _, b in cpu]),
                    "errors": sum(m.errors + b.errors for m, b in pairs),
                }
            )
    return rows


def table(result: InterleavedResult, base: str = "vllm") -> str:
    rounds = len(result.rounds)
    lines = [
        f"Interleaved, {rounds} rounds in ABBA order, both servers up on one machine. "
        f"Ratios: target tok/s ÷ {base} tok/s in the same round.",
        "",
        "| target | concurrency | tok/s (mean) | "
        + f"{base} tok/s (mean) | ratio per round | geometric mean | min – max | p50 added (ms, median) "
        + f"| API-process CPU ms/token (target / {base}) | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary(result, base):
        per_round = ", ".join(f"{r:.3f}" for r in row["ratios"])
        lines.append(
            f"| {row['target']} | {row['concurrency']} | {row['tokens_per_s']:,.0f} | "
            f"{row['base_tokens_per_s']:,.0f} | {per_round} | **{row['geomean']:.3f}** | "
            f"{row['min']:.3f} – {row['max']:.3f} | {row['p50_added_ms']:+.1f} | "
            f"{row['api_cpu_ms_per_token']:.3f} / {row['base_api_cpu_ms_per_token']:.3f} | "
            f"{row['errors']} |"
        )
    ready = ", ".join(f"{t} {s:.1f} s" for t, s in result.ready_s.items())
    lines += ["", f"Time to ready, started one after the other (not a cold comparison): {ready}"]
    return "\n".join(lines)


def main(args: argparse.Namespace, start: Start, stop: Stop) -> None:
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    vocab = model_vocab(args.model)
    result = run(args, vocab, start, stop)
    text = table(result)
    print(text)
    if args.out:
        document = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "interleaved": asdict(result),
            "summary": summary(result),
            "table": text,
        }
        args.out.write_text(json.dumps(document, indent=2))
