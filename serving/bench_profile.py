"""The benchmark's profile level: py-spy samples a server and its engine process under load."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import subprocess
from pathlib import Path
from typing import Any

from serving.bench_load import make_prompts, run_async, run_level


def profile(
    pid: int,
    target: str,
    args: argparse.Namespace,
    url: str,
    vocab: int,
    rng: random.Random,
    log_dir: Path,
    models: tuple[str, ...] = ("bench",),
    label: str = "",
) -> None:
    """Sample the server's Python stacks with py-spy under load (an extra, unrecorded level).

    `--subprocesses` takes in vLLM's engine process too: each stack starts with its process.
    """
    import shutil

    spy = shutil.which("py-spy")
    if spy is None:
        print("   py-spy not found: no profile", flush=True)
        return
    name = f"{target}.pyspy{label}"
    sampler = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--duration",
            str(args.profile_seconds),
            "--rate",
            "250",
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(log_dir / f"{name}.txt"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(log_dir / f"{name}.log").open("w"),
    )
    concurrency = args.profile_concurrency
    prompts = make_prompts(concurrency * 40, args.prompt_tokens, vocab, rng)
    level = run_level(url, concurrency, prompts, args.output_tokens, True, models)
    run_async(_load_while(sampler, level))
    sampler.wait(timeout=args.profile_seconds + 60)


async def _load_while(sampler: subprocess.Popen[bytes], level: Any) -> None:
    """Keep the load on while py-spy samples; stop it (mid-stream) once the sampler ends."""
    task = asyncio.ensure_future(level)
    while sampler.poll() is None and not task.done():
        await asyncio.sleep(0.2)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
