"""The benchmark's client: closed-loop streaming completions at a fixed concurrency, timed per request."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Level:
    """One concurrency level's figures for one target."""

    concurrency: int
    requests: int
    errors: int
    wall_s: float
    output_tokens: int
    tokens_per_s: float
    requests_per_s: float
    latency_p50_s: float
    latency_p99_s: float
    ttft_p50_s: float
    ttft_p99_s: float


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def _one(
    session: Any,
    url: str,
    prompt: list[int],
    output_tokens: int,
    stream: bool,
    model: str = "bench",
) -> tuple[float, float, int]:
    """(latency, time to first token, output tokens) of one completion."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "max_tokens": output_tokens,
        "ignore_eos": True,
        "temperature": 1.0,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    async with session.post(url + "/v1/completions", json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {(await response.text())[:200]}")
        if not stream:
            result = await response.json()
            done = time.perf_counter() - started
            return done, done, int(result["usage"]["completion_tokens"])
        # Read whatever bytes arrived, not line by line: the client must stay cheap per event, or at
        # high token rates it becomes the bottleneck (and favours servers that send fewer events).
        tail = b""
        async for data in response.content.iter_any():
            if not first:
                first = time.perf_counter() - started
            tail = (tail + data)[-8192:]
        tokens = _usage_tokens(tail)
    return time.perf_counter() - started, first, tokens


def _usage_tokens(tail: bytes) -> int:
    """completion_tokens from the stream's usage event (the last event before [DONE])."""
    for event in reversed(tail.split(b"\n\n")):
        if event.startswith(b"data: {") and b'"usage"' in event:
            usage = json.loads(event[6:]).get("usage") or {}
            return int(usage.get("completion_tokens", 0))
    return 0


async def run_level(
    url: str,
    concurrency: int,
    prompts: list[list[int]],
    output_tokens: int,
    stream: bool,
    models: tuple[str, ...] = ("bench",),
) -> Level:
    """Closed loop at `concurrency`; request i asks for models[i % len(models)] (adapters mixed)."""
    import aiohttp

    queue: asyncio.Queue[tuple[str, list[int]]] = asyncio.Queue()
    for number, prompt in enumerate(prompts):
        queue.put_nowait((models[number % len(models)], prompt))
    latencies: list[float] = []
    ttfts: list[float] = []
    totals = [0, 0]  # tokens, errors
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=1800)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while not queue.empty():
                model, prompt = queue.get_nowait()
                try:
                    latency, ttft, tokens = await _one(
                        session, url, prompt, output_tokens, stream, model
                    )
                except Exception as error:  # counted, and the first few printed
                    totals[1] += 1
                    if totals[1] <= 3:
                        print(f"  request failed: {error}", file=sys.stderr)
                    continue
                latencies.append(latency)
                ttfts.append(ttft)
                totals[0] += tokens

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return Level(
        concurrency=concurrency,
        requests=len(latencies),
        errors=totals[1],
        wall_s=round(wall, 3),
        output_tokens=totals[0],
        tokens_per_s=round(totals[0] / wall, 1),
        requests_per_s=round(len(latencies) / wall, 3),
        latency_p50_s=round(percentile(latencies, 0.5), 4),
        latency_p99_s=round(percentile(latencies, 0.99), 4),
        ttft_p50_s=round(percentile(ttfts, 0.5), 4),
        ttft_p99_s=round(percentile(ttfts, 0.99), 4),
    )


def level_requests(concurrency: int, args: Any) -> int:
    """Requests in one level: --requests, else --requests-per-slot each, at least --min-requests."""
    return int(args.requests or max(args.min_requests, concurrency * args.requests_per_slot))


def model_vocab(model: Any) -> int:
    """The model folder's vocabulary size (prompts are random token ids below it)."""
    return int(json.loads((Path(model) / "config.json").read_text())["vocab_size"])


def make_prompts(count: int, length: int, vocab: int, rng: random.Random) -> list[list[int]]:
    # Distinct random prompts: no request reuses another's prefix from the cache.
    return [[rng.randrange(10, vocab) for _ in range(length)] for _ in range(count)]


def run_async(coroutine: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
