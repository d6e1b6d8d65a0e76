"""Serving benchmark: this container vs plain vLLM's OpenAI server vs the blocking LLM.generate-in-a-handler design.

Fixed prompt and output lengths (ignore EOS), distinct random token prompts, concurrency levels run in turn.
Prints throughput, p50/p99 latency, time to first token and time to ready, with ratios to plain vLLM.
  python -m serving.bench --model DIR [--concurrency 1,16,64] [--targets container,vllm,blocking]
With --startup N: time to ready only, cold / restored compile cache / vllm serve (serving/bench_startup.py).
With --interleave N: every target up at once, N rounds of the levels taken in turns (serving/bench_interleave.py).
With --adapters N (container and vllm only): N random-weight LoRA adapters served mixed against the
base model on the same server, and the first request to each of --first-adapters fresh ones timed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from serving import bench_adapters, bench_interleave, bench_startup
from serving.bench_adapters import AdapterResult, AdapterSet
from serving.bench_load import level_requests, make_prompts, model_vocab, run_async, run_level
from serving.bench_profile import profile
from serving.bench_report import TargetResult, plot, report

TARGETS = ("container", "vllm", "blocking")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _argv(
    target: str, args: argparse.Namespace, port: int, adapters: AdapterSet | None = None
) -> list[str]:
    common = ["--max-model-len", str(args.max_model_len), "--dtype", args.dtype]
    common += ["--gpu-memory-utilization", str(args.gpu_memory_utilization)]
    if adapters is not None:
        common += bench_adapters.server_flags(target, adapters, args)
    common += shlex.split(args.server_args)
    if target == "container":
        return [
            sys.executable,
            "-m",
            "serving",
            "--model",
            str(args.model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--served-model-name",
            "bench",
            *common,
        ]
    if target == "vllm":
        return [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(args.model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--served-model-name",
            "bench",
            *common,
        ]
    return [
        sys.executable,
        "-m",
        "serving.bench_blocking",
        "--model",
        str(args.model),
        "--port",
        str(port),
        *common,
    ]


def _start(
    target: str, args: argparse.Namespace, log_dir: Path, adapters: AdapterSet | None = None
) -> tuple[subprocess.Popen[bytes], str, float]:
    """Start a target and wait for its health 200; returns the process, its URL and time to ready."""
    port = _free_port()
    log = open(log_dir / f"{target}.log", "wb")  # noqa: SIM115 - kept open for the child's lifetime
    started = time.monotonic()
    env = dict(os.environ)
    if adapters is not None:
        env.update(bench_adapters.server_env(target, adapters))
    if args.fresh_caches:
        # Each target compiles from scratch, as a new replica does: no target reuses another's cache.
        env["VLLM_CACHE_ROOT"] = str((log_dir / f"cache-{target}").resolve())
        env["TORCHINDUCTOR_CACHE_DIR"] = str((log_dir / f"inductor-{target}").resolve())
        env["TRITON_CACHE_DIR"] = str((log_dir / f"triton-{target}").resolve())
    process = subprocess.Popen(
        _argv(target, args, port, adapters),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = started + args.ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{target} exited with {process.returncode}; see {log_dir}/{target}.log"
            )
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return process, url, time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    _stop(process)
    raise RuntimeError(
        f"{target} not ready after {args.ready_timeout}s; see {log_dir}/{target}.log"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def run(args: argparse.Namespace) -> tuple[list[TargetResult], list[AdapterResult]]:
    vocab = model_vocab(args.model)
    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    results: list[TargetResult] = []
    adapter_results: list[AdapterResult] = []
    adapters = bench_adapters.prepare(args, log_dir / "adapters") if args.adapters else None
    for target in args.targets:
        rng = random.Random(args.seed)
        print(f"== {target}: starting", flush=True)
        process, url, ready = _start(target, args, log_dir, adapters)
        result = TargetResult(target, round(ready, 2))
        print(f"   ready in {ready:.1f} s", flush=True)
        try:
            if adapters is not None:
                measured = bench_adapters.measure(target, url, adapters, args, vocab, rng)
                adapter_results.append(measured)
                results.append(result)
                if args.profile_seconds:  # the base model, then the mix: what the mix adds
                    for label, models in (("-base", ("bench",)), ("-mix", adapters.mix)):
                        profile(process.pid, target, args, url, vocab, rng, log_dir, models, label)
                continue
            stream = target != "blocking"
            run_async(
                run_level(
                    url,
                    4,
                    make_prompts(8, args.prompt_tokens, vocab, rng),
                    args.output_tokens,
                    stream,
                )
            )  # warm-up, not recorded
            for concurrency in args.concurrency:
                if target == "blocking" and concurrency > args.blocking_max_concurrency:
                    continue
                count = level_requests(concurrency, args)
                if target == "blocking":
                    count = max(8, concurrency)  # one at a time: keep its run short
                prompts = make_prompts(count, args.prompt_tokens, vocab, rng)
                level = run_async(run_level(url, concurrency, prompts, args.output_tokens, stream))
                result.levels.append(level)
                print(
                    f"   c={concurrency:<4} {level.tokens_per_s:>10.1f} tok/s  "
                    f"p50 {level.latency_p50_s:.3f} s  ttft p50 {level.ttft_p50_s:.3f} s  "
                    f"errors {level.errors}",
                    flush=True,
                )
            if args.profile_seconds:
                profile(process.pid, target, args, url, vocab, rng, log_dir)
        finally:
            _stop(process)
        results.append(result)
    return results, adapter_results


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serving.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, type=Path, help="local model folder")
    parser.add_argument(
        "--targets", default=",".join(TARGETS), type=lambda s: [t for t in s.split(",") if t]
    )
    parser.add_argument("--concurrency", default="1,16,64", type=_ints)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument(
        "--requests", type=int, default=0, help="requests per level (0: 4 per slot)"
    )
    parser.add_argument("--requests-per-slot", type=int, default=4)
    parser.add_argument(
        "--min-requests",
        type=int,
        default=8,
        help="fewest requests per level (more samples for the low-concurrency percentiles)",
    )
    parser.add_argument("--blocking-max-concurrency", type=int, default=64)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument(
        "--server-args",
        default="",
        help="more engine/server flags for every target, as one string (e.g. "
        '"--lora-target-modules q_proj v_proj")',
    )
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument("--ready-timeout", type=float, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reuse-caches",
        dest="fresh_caches",
        action="store_false",
        help="let targets share vLLM's compile cache (default: each starts cold)",
    )
    parser.add_argument("--log-dir", default="bench-logs")
    parser.add_argument(
        "--profile-seconds",
        type=int,
        default=0,
        help="after the levels, sample each server and its engine process with py-spy for this "
        "long (adapter mode: once under the base model, once under the mix)",
    )
    parser.add_argument("--profile-concurrency", type=int, default=64)
    parser.add_argument(
        "--adapters", type=int, default=0, help="adapter mode: this many adapters in the mix"
    )
    parser.add_argument("--first-adapters", type=int, default=20, help="fresh adapters probed")
    parser.add_argument("--adapter-rank", type=int, default=16)
    parser.add_argument("--first-output-tokens", type=int, default=16)
    parser.add_argument(
        "--startup",
        type=int,
        default=0,
        help="startup mode: this many rounds of time to ready (no load levels): the container "
        "cold, restoring its compile cache from the bucket, and vllm serve cold",
    )
    parser.add_argument(
        "--startup-conditions",
        default=",".join(bench_startup.CONDITIONS),
        type=lambda s: [c for c in s.split(",") if c],
    )
    parser.add_argument(
        "--interleave",
        type=int,
        default=0,
        help="interleaved mode: start every target at once (give each its share of "
        "--gpu-memory-utilization) and run this many rounds of the levels, ABBA",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--plot", type=Path, help="write a PNG of throughput vs concurrency here")
    parser.add_argument("--title", default="serving throughput")
    args = parser.parse_args(argv)
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; choose from {', '.join(TARGETS)}")
    odd = set(args.startup_conditions) - set(bench_startup.CONDITIONS)
    if odd:
        parser.error(f"unknown startup conditions {sorted(odd)}")
    if args.adapters and "blocking" in args.targets:
        parser.error("--adapters measures the container and vllm targets only")
    if args.interleave and (
        "blocking" in args.targets or "vllm" not in args.targets or len(args.targets) < 2
    ):
        parser.error("--interleave compares the container with vllm: --targets container,vllm")
    if args.interleave and (args.adapters or args.startup or args.profile_seconds):
        parser.error(
            "--interleave does not combine with --adapters, --startup or --profile-seconds"
        )
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.startup:
        startup = bench_startup.run(args, _argv)
        print(bench_startup.table(startup))
        if args.out:
            args.out.write_text(
                json.dumps(
                    {"args": {k: str(v) for k, v in vars(args).items()}, **startup}, indent=2
                )
            )
        return
    if args.interleave:
        bench_interleave.main(args, lambda target: _start(target, args, Path(args.log_dir)), _stop)
        return
    results, adapter_results = run(args)
    table = report(results) if not adapter_results else ""
    print(table)
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "results": [asdict(r) for r in results],
                    "adapters": [{"summary": r.summary(), **asdict(r)} for r in adapter_results],
                    "table": table,
                },
                indent=2,
            )
        )
    if args.plot and not adapter_results:
        plot(results, args.plot, args.title)


if __name__ == "__main__":
    main()
