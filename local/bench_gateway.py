"""The gateway's figures on the local stack (faithful emulator, scaled timings, echo deployments).

    python -m local.bench_gateway [--requests 200 --streaming 50] [--latency 300] [--time-scale 0.01]

1. a burst sent while the endpoint sleeps: every request answered, errors, wake commands published;
2. a ready endpoint, direct (Vertex rawPredict) and through the gateway, interleaved: p50 added;
3. a 20-minute wake (scaled): held streams stay open (keep-alives, longest silence) to the answer.
Every part is bounded in count and time; the stack is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from local.gateway_rig import CommandTap, Rig, start_rig, stop_rig

ENDPOINT = "gw-bench"
KINDS = ("stream", "chat", "predict")


@dataclass
class Outcome:
    """One request through the gateway, as its client saw it."""

    kind: str
    status: int = 0
    keepalives: int = 0
    data_events: int = 0
    text: str = ""
    seconds: float = 0.0
    longest_silence_s: float = 0.0
    error: str = ""
    retry_after: str | None = None

    @property
    def answered(self) -> bool:
        return self.status == 200 and not self.error and bool(self.text)


def request_of(kind: str, endpoint: str, gateway: str) -> tuple[str, dict[str, Any]]:
    messages = [{"role": "user", "content": "hello"}]
    if kind == "predict":
        body = {"instances": [{"prompt": "hello"}], "parameters": {"max_tokens": 4}}
        return f"{gateway}/v1/endpoints/{endpoint}:predict", body
    chat = {"model": endpoint, "messages": messages, "max_tokens": 4}
    return f"{gateway}/v1/chat/completions", {**chat, "stream": kind == "stream"}


async def send(client: httpx.AsyncClient, gateway: str, endpoint: str, kind: str) -> Outcome:
    url, body = request_of(kind, endpoint, gateway)
    out = Outcome(kind)
    began = last = time.monotonic()
    try:
        async with client.stream("POST", url, json=body) as response:
            out.status = response.status_code
            out.retry_after = response.headers.get("retry-after")
            if kind != "stream" or response.status_code != 200:
                raw = await response.aread()
                out.text = _text(raw)
                if response.status_code != 200:
                    out.error = raw.decode(errors="replace")[:300]
            else:
                async for line in response.aiter_lines():
                    now = time.monotonic()
                    out.longest_silence_s = max(out.longest_silence_s, now - last)
                    last = now
                    if line.startswith(":"):
                        out.keepalives += 1
                    elif line.startswith("data: ") and line != "data: [DONE]":
                        chunk = json.loads(line[6:])
                        if "error" in chunk:
                            out.error = json.dumps(chunk["error"])[:300]
                        out.data_events += 1
                        for choice in chunk.get("choices", []):
                            out.text += (choice.get("delta") or {}).get("content") or ""
    except httpx.HTTPError as error:
        out.error = f"{type(error).__name__}: {error}"
    out.seconds = time.monotonic() - began
    return out


def _text(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return ""
    if "predictions" in body:
        return json.dumps(body["predictions"])
    choices = body.get("choices") or [{}]
    return str((choices[0].get("message") or {}).get("content") or "")


async def burst(gateway: str, endpoint: str, kinds: list[str], timeout_s: float) -> list[Outcome]:
    limits = httpx.Limits(max_connections=len(kinds) + 8, max_keepalive_connections=32)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        return list(await asyncio.gather(*(send(client, gateway, endpoint, k) for k in kinds)))


def mix(total: int, streaming: int) -> list[str]:
    """`streaming` streamed chats, the rest half chats, half predicts, interleaved."""
    rest = total - streaming
    kinds = ["stream"] * streaming + ["chat"] * (rest - rest // 2) + ["predict"] * (rest // 2)
    return _interleave(kinds)


def _interleave(kinds: list[str]) -> list[str]:
    groups = [[k for k in kinds if k == kind] for kind in KINDS]
    out: list[str] = []
    while any(groups):
        for group in groups:
            if group:
                out.append(group.pop())
    return out


@dataclass
class BurstFigures:
    sent: int
    streaming: int
    answered: int
    errors: int
    wakes_published: int
    wake_request_ids: list[str]
    asleep_after_s: float
    first_answer_s: float
    last_answer_s: float
    keepalives_per_stream_min: int
    longest_silence_s: float
    statuses: dict[str, int] = field(default_factory=dict)
    samples_of_errors: list[str] = field(default_factory=list)


def sleeping_burst(rig: Rig, endpoint: str, total: int, streaming: int) -> BurstFigures:
    asleep_s = rig.wait_asleep(endpoint)
    tap = CommandTap(rig)
    outcomes = asyncio.run(burst(rig.gateway, endpoint, mix(total, streaming), timeout_s=600))
    wakes = [c for c in tap.drain(settle_s=2.0) if c.get("action") == "wake"]
    streams = [o for o in outcomes if o.kind == "stream"]
    statuses: dict[str, int] = {}
    for o in outcomes:
        statuses[str(o.status)] = statuses.get(str(o.status), 0) + 1
    return BurstFigures(
        sent=len(outcomes),
        streaming=len(streams),
        answered=sum(o.answered for o in outcomes),
        errors=sum(not o.answered for o in outcomes),
        wakes_published=len(wakes),
        wake_request_ids=sorted({str(c.get("request_id")) for c in wakes}),
        asleep_after_s=round(asleep_s, 1),
        first_answer_s=round(min(o.seconds for o in outcomes), 2),
        last_answer_s=round(max(o.seconds for o in outcomes), 2),
        keepalives_per_stream_min=min((o.keepalives for o in streams), default=0),
        longest_silence_s=round(max((o.longest_silence_s for o in streams), default=0.0), 2),
        statuses=statuses,
        samples_of_errors=[o.error for o in outcomes if o.error][:3],
    )


def latency(rig: Rig, endpoint: str, count: int, warmup: int = 20) -> dict[str, Any]:
    """The same chat body direct to Vertex's rawPredict and through the gateway, alternating."""
    direct_url = rig.endpoint_url(endpoint) + ":rawPredict"
    via_url, body = request_of("chat", endpoint, rig.gateway)
    direct_body = {**body, "model": "echo-model"}
    times: dict[str, list[float]] = {"direct": [], "gateway": []}
    with httpx.Client(timeout=60) as direct, httpx.Client(timeout=60) as via:
        for i in range(warmup + count):
            for name, client, url, payload in (
                ("direct", direct, direct_url, direct_body),
                ("gateway", via, via_url, body),
            )[:: 1 if i % 2 else -1]:
                began = time.perf_counter()
                response = client.post(url, json=payload)
                spent = time.perf_counter() - began
                if response.status_code != 200:
                    raise RuntimeError(f"{name} answered {response.status_code}: {response.text}")
                if i >= warmup:
                    times[name].append(spent * 1000)
    p50 = {k: statistics.median(v) for k, v in times.items()}
    p95 = {k: sorted(v)[int(0.95 * len(v)) - 1] for k, v in times.items()}
    return {
        "requests_each": count,
        "p50_ms": {k: round(v, 2) for k, v in p50.items()},
        "p95_ms": {k: round(v, 2) for k, v in p95.items()},
        "p50_added_ms": round(p50["gateway"] - p50["direct"], 2),
        "p50_ratio": round(p50["gateway"] / p50["direct"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--streaming", type=int, default=50)
    parser.add_argument("--latency", type=int, default=300, help="requests per target")
    parser.add_argument("--time-scale", type=float, default=0.01)
    parser.add_argument("--long-wake-s", type=float, default=1200, help="modelled wake (scaled)")
    parser.add_argument("--long-wake-streams", type=int, default=20)
    parser.add_argument("--idle-ttl", default="8s")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here too")
    args = parser.parse_args(argv)
    if not 0 <= args.streaming <= args.requests <= 500:
        parser.error("need 0 <= --streaming <= --requests <= 500")
    figures: dict[str, Any] = {"time_scale": args.time_scale}
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        rig = start_rig(Path(tmp), args.time_scale)
        try:
            began = time.monotonic()
            rig.deploy_echo(ENDPOINT, args.idle_ttl)
            figures["deploy_s"] = round(time.monotonic() - began, 1)
            figures["asleep_burst"] = asdict(
                sleeping_burst(rig, ENDPOINT, args.requests, args.streaming)
            )
            figures["ready_latency"] = latency(rig, ENDPOINT, args.latency)
            # The emulator provisions for the first 40% of the modelled CPU deploy (600 s) after
            # the fault's delay, then starts the server: delay + 40% is a wake of --long-wake-s.
            modelled = 600 * args.time_scale
            wake = args.long_wake_s * args.time_scale
            rig.set_deploy_delay(max(0.0, wake - 0.4 * modelled))
            long = sleeping_burst(rig, ENDPOINT, args.long_wake_streams, args.long_wake_streams)
            figures["long_wake"] = {"modelled_wake_s": args.long_wake_s, **asdict(long)}
        finally:
            stop_rig(rig)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
