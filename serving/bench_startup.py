"""Time to ready (process start → health 200): the container cold, the container restoring a saved compile cache, `vllm serve` cold.

Rounds interleave the three conditions (rotated each round, so order effects cancel). Every run
starts on an emptied VLLM_CACHE_ROOT, inductor and Triton cache ("a fresh replica's disk"); `cold`
also starts on an empty bucket, `restored` on the bucket the first cold run saved its cache to.
Each run's breakdown: the container's `startup phases` line and, for both servers, the times of
vLLM's own engine log lines. `python -m serving.bench --model DIR --startup 3` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

CONDITIONS = ("cold", "restored", "vllm")
# vLLM's own lines (the engine process logs them, for both servers): seconds since the process
# started at the first line matching each.
MARKERS = {
    "engine_process_up": r"Initializing a V1 LLM engine",
    "model_load_start": r"Starting to load model",
    "compile_start": r"Warming up model for the compilation|Dynamo bytecode transform time",
    "kv_cache_start": r"KV cache size|Available KV cache memory|GPU KV cache size",
    "engine_ready": r"init engine \(profile, create kv cache, warmup model\) took",
}
TOOK = {
    "weights_load_s": r"Loading weights took ([\d.]+) s",
    "compile_s": r"torch\.compile took ([\d.]+) s|Compiling a graph for .* takes ([\d.]+) s",
    "init_engine_s": r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s",
}
_TEXT_TIME = re.compile(r"(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d+))?")

ArgvFor = Callable[[str, argparse.Namespace, int], list[str]]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _lines(log: Path) -> list[tuple[float | None, str, dict[str, Any] | None]]:
    """(wall time, message, JSON entry) of each log line: the container's JSON, vLLM's text."""
    found: list[tuple[float | None, str, dict[str, Any] | None]] = []
    year = datetime.now().year
    for line in log.read_text(errors="replace").splitlines():
        entry: Any = None
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
        if isinstance(entry, dict) and "message" in entry:
            # serving.logs stamps local time (logging's formatTime) with a "Z" after it.
            text = str(entry.get("time", "")).rstrip("Z")
            try:
                when: float | None = datetime.fromisoformat(text).timestamp()
            except ValueError:
                when = None
            found.append((when, str(entry["message"]), entry))
            continue
        match = _TEXT_TIME.search(line)
        when = None
        if match:  # vLLM's own format: local month-day time, no year
            month, day, hour, minute, second, fraction = match.groups()
            stamp = datetime(year, int(month), int(day), int(hour), int(minute), int(second))
            when = stamp.timestamp() + float(f"0.{fraction or 0}")
        found.append((when, line, None))
    return found


def breakdown(log: Path, started_wall: float) -> dict[str, Any]:
    """The container's phases (if it logged them) and vLLM's markers, in seconds since the start."""
    result: dict[str, Any] = {}
    lines = _lines(log)
    for _, message, entry in lines:
        if entry is not None and message == "startup phases":
            result["phases"] = entry.get("phases", {})
    markers: dict[str, float] = {}
    took: dict[str, float] = {}
    for when, message, _ in lines:
        for name, pattern in MARKERS.items():
            if name not in markers and when is not None and re.search(pattern, message):
                markers[name] = round(when - started_wall, 2)
        for name, pattern in TOOK.items():
            match = re.search(pattern, message)
            if match and name not in took:
                took[name] = float(next(g for g in match.groups() if g))
    result["markers"] = markers
    result["took"] = took
    return result


def _start_and_time(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    port: int,
    timeout_s: float,
    wait_for_save: bool = False,
) -> tuple[float, float]:
    """Run `argv` until its health answers 200; returns (wall start, seconds to ready); stops it
    (once its compile cache is saved, with `wait_for_save`)."""
    from serving.bench import _stop

    with open(log_path, "wb") as log:
        started_wall = time.time()
        started = time.monotonic()
        process = subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            while time.monotonic() - started < timeout_s:
                if process.poll() is not None:
                    raise RuntimeError(f"exited with {process.returncode}; see {log_path}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                        if r.status == 200:
                            return started_wall, time.monotonic() - started
                except (urllib.error.URLError, OSError):
                    pass
                time.sleep(0.05)
            raise RuntimeError(f"not ready after {timeout_s}s; see {log_path}")
        finally:
            if wait_for_save:
                _wait_for_save(log_path, process)
            _stop(process)


def _wait_for_save(
    log_path: Path, process: subprocess.Popen[bytes], timeout_s: float = 300
) -> None:
    """The run that fills the reference bucket is stopped only once its cache is saved."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        text = log_path.read_text(errors="replace")
        if '"compile cache saved"' in text or '"compile cache not saved"' in text:
            return
        time.sleep(0.2)


def run(args: argparse.Namespace, argv_for: ArgvFor) -> dict[str, Any]:
    """`args.startup` rounds of the conditions in `args.startup_conditions`, rotated each round."""
    work = Path(args.log_dir).resolve() / "startup"
    work.mkdir(parents=True, exist_ok=True)
    reference = work / "bucket-reference"
    conditions = [c for c in CONDITIONS if c in args.startup_conditions]
    runs: list[dict[str, Any]] = []
    for round_index in range(args.startup):
        shift = round_index % len(conditions)
        order = conditions[shift:] + conditions[:shift]
        if round_index == 0 and "restored" in order and "cold" in order:
            order.remove("cold")
            order.insert(0, "cold")  # the first cold run fills the reference bucket
        for condition in order:
            runs.append(_one(condition, round_index, args, argv_for, work, reference))
            ready = runs[-1]["ready_s"]
            print(f"   {condition:<9} round {round_index}: ready in {ready:.1f} s", flush=True)
    return {"runs": runs, "summary": summarize(runs)}


def _one(
    condition: str,
    round_index: int,
    args: argparse.Namespace,
    argv_for: ArgvFor,
    work: Path,
    reference: Path,
) -> dict[str, Any]:
    seeds = not (reference / "compile-cache").is_dir() and condition == "cold"
    name = f"{condition}-{round_index}" + ("-seed" if seeds else "")
    # One path for every run, emptied first: a fresh replica's disk, where every replica of the
    # image has its cache root (vLLM's artifacts may record where they were made).
    disk = work / "disk"
    shutil.rmtree(disk, ignore_errors=True)
    moved = ("TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "VLLM_CACHE_ROOT", "XDG_CACHE_HOME")
    env = {k: v for k, v in os.environ.items() if k not in moved}
    env.update({"VLLM_CACHE_ROOT": str(disk / "vllm-cache"), "XDG_CACHE_HOME": str(disk / "xdg")})
    if condition == "vllm":
        # Where the container puts them by itself (settings.compile_cache_env): fresh too.
        env["TRITON_CACHE_DIR"] = str(disk / "vllm-cache" / "triton_cache")
        env["TORCHINDUCTOR_CACHE_DIR"] = str(disk / "vllm-cache" / "inductor_cache")
    else:
        bucket = reference if (seeds or condition == "restored") else disk / "bucket"
        bucket.mkdir(parents=True, exist_ok=True)
        env["MODELDROP_STATE_BUCKET"] = str(bucket)
    if condition == "restored" and not (reference / "compile-cache").is_dir():
        raise RuntimeError("no saved compile cache to restore: the first cold run saved none")
    port = _free_port()
    target = "vllm" if condition == "vllm" else "container"
    log_path = work / f"{name}.log"
    started_wall, ready = _start_and_time(
        argv_for(target, args, port), env, log_path, port, args.ready_timeout, seeds
    )
    return {
        "condition": condition,
        "round": round_index,
        "ready_s": round(ready, 2),
        "log": str(log_path),
        **breakdown(log_path, started_wall),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median time to ready per condition and the ratios the issue names."""
    medians = {
        condition: statistics.median(r["ready_s"] for r in runs if r["condition"] == condition)
        for condition in CONDITIONS
        if any(r["condition"] == condition for r in runs)
    }
    summary: dict[str, Any] = {"median_ready_s": medians}
    for top, bottom in (("restored", "vllm"), ("cold", "vllm"), ("restored", "cold")):
        if top in medians and bottom in medians:
            summary[f"{top}/{bottom}"] = round(medians[top] / medians[bottom], 3)
    return summary


def table(result: dict[str, Any]) -> str:
    rows = [
        "| condition | round | ready s | phases (container) | vLLM engine lines (s since start) |"
    ]
    rows.append("|---|---|---|---|---|")
    for r in result["runs"]:
        phases = ", ".join(f"{k} {v['duration_s']}" for k, v in r.get("phases", {}).items())
        markers = ", ".join(f"{k} {v}" for k, v in {**r["markers"], **r["took"]}.items())
        rows.append(f"| {r['condition']} | {r['round']} | {r['ready_s']} | {phases} | {markers} |")
    rows.append("")
    rows.append(json.dumps(result["summary"]))
    return "\n".join(rows)
