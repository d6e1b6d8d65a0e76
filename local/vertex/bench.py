"""`python -m local.vertex.bench`: control-call latency, listing 1,000 endpoints, deploy-to-ready overhead."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from local import processes
from local.vertex.testing import PARENT, V1, Running, launch

SERVING_IMAGE = "us-docker.pkg.dev/modeldrop-bench/modeldrop/serving:bench"
CPU_SERVING_ENV = {"MODELDROP_SERVING_HOST": "127.0.0.1", "VLLM_CPU_KVCACHE_SPACE": "1"}


def timed(action: Callable[[], object], count: int) -> list[float]:
    """Milliseconds of `count` calls of `action`."""
    out = []
    for _ in range(count):
        started = time.perf_counter()
        action()
        out.append((time.perf_counter() - started) * 1000)
    return out


def summary(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered), 2),
        "p95": round(ordered[int(len(ordered) * 0.95) - 1], 2),
        "n": len(ordered),
    }


def control_calls(vertex: Running, count: int) -> dict[str, dict[str, float]]:
    """p50/p95 of the calls the functions make, over one keep-alive connection."""
    client = httpx.Client(base_url=vertex.url, timeout=30)
    model, endpoint = vertex.echo_model("bench-control")
    ids = iter(range(10**6))

    def create() -> None:
        client.post(
            f"{V1}/endpoints", params={"endpointId": f"c-{next(ids)}"}, json={"displayName": "c"}
        )

    def patch() -> None:
        client.patch(
            f"/v1/{endpoint}", params={"updateMask": "labels"}, json={"labels": {"a": "b"}}
        )

    calls: dict[str, Callable[[], object]] = {
        "GetModel": lambda: client.get(f"/v1/{model}"),
        "GetEndpoint": lambda: client.get(f"/v1/{endpoint}"),
        "UpdateEndpoint (labels)": patch,
        "CreateEndpoint": create,
        "ListEndpoints (filter, page of 100)": lambda: client.get(
            f"{V1}/endpoints", params={"filter": "labels.a=b", "pageSize": 100}
        ),
    }
    result = {name: summary(timed(call, count)) for name, call in calls.items()}
    for name in list(calls)[:2]:
        result[name + " via aiplatform_v1 REST"] = gapic_get(vertex, name, model, endpoint, count)
    return result


def gapic_get(
    vertex: Running, name: str, model: str, endpoint: str, count: int
) -> dict[str, float]:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1 as v1

    options: dict[str, Any] = {
        "client_options": ClientOptions(api_endpoint=vertex.url),
        "transport": "rest",
        "credentials": AnonymousCredentials(),  # type: ignore[no-untyped-call]
    }
    if name == "GetModel":
        models = v1.ModelServiceClient(**options)
        return summary(timed(lambda: models.get_model(name=model), count))
    endpoints = v1.EndpointServiceClient(**options)
    return summary(timed(lambda: endpoints.get_endpoint(name=endpoint), count))


def predict_proxy(vertex: Running, count: int) -> dict[str, dict[str, float]]:
    """One predict straight to the echo server against the same through the emulator's proxy."""
    model, endpoint = vertex.echo_model("bench-proxy")
    deployment = vertex.process(vertex.deploy(model, endpoint))
    client = httpx.Client(timeout=30)
    body = {"instances": [{"prompt": "hi"}]}
    direct = f"http://127.0.0.1:{deployment['port']}{deployment['predictRoute']}"
    routed = f"{vertex.url}/v1/{endpoint}:predict"
    return {
        "echo server directly": summary(timed(lambda: client.post(direct, json=body), count)),
        "through :predict": summary(timed(lambda: client.post(routed, json=body), count)),
    }


def listing(vertex: Running, total: int) -> dict[str, Any]:
    """Create `total` labelled endpoints, then list them all, 100 per page, with the label filter."""
    client = httpx.Client(base_url=vertex.url, timeout=30)
    started = time.perf_counter()
    for i in range(total):
        body = {"displayName": f"e{i}", "labels": {"managed-by": "modeldrop"}}
        client.post(f"{V1}/endpoints", params={"endpointId": f"list-{i}"}, json=body)
    created_s = time.perf_counter() - started
    started = time.perf_counter()
    token, pages, seen = "", 0, 0
    while True:
        params: dict[str, str | int] = {
            "filter": "labels.managed-by=modeldrop",
            "pageSize": 100,
            "pageToken": token,
        }
        page = client.get(f"{V1}/endpoints", params=params).json()
        pages, seen = pages + 1, seen + len(page.get("endpoints", []))
        token = page.get("nextPageToken", "")
        if not token:
            break
    return {
        "endpoints": seen,
        "pages": pages,
        "list_all_ms": round((time.perf_counter() - started) * 1000, 1),
        "create_each_ms": round(created_s * 1000 / total, 2),
    }


def by_hand(argv: list[str], env: dict[str, str], health: str, log: Path) -> float:
    """Seconds from starting `argv` to its health route answering 200."""
    port = processes.free_port()
    env = {**os.environ, **env, "AIP_HTTP_PORT": str(port), "AIP_HEALTH_ROUTE": health}
    started = time.perf_counter()
    child = processes.start("by-hand", argv, log, env=env)
    try:
        processes.wait_http(f"http://127.0.0.1:{port}{health}", child, timeout_s=600)
        return time.perf_counter() - started
    finally:
        processes.stop(child)


def through_emulator(vertex: Running, model: str, endpoint: str) -> float:
    """Seconds from deployModel to its operation done (then undeployed again)."""
    started = time.perf_counter()
    operation = vertex.wait_operation(vertex.start_deploy(model, endpoint), timeout_s=600)
    elapsed = time.perf_counter() - started
    if "error" in operation:
        raise RuntimeError(f"deploy failed: {operation['error']['message']}")
    deployed = operation["response"]["deployedModel"]["id"]
    vertex.wait_operation(
        vertex.call("POST", f"/v1/{endpoint}:undeployModel", json={"deployedModelId": deployed})[
            "name"
        ]
    )
    return elapsed


def deploy_overhead(
    vertex: Running, tmp: Path, tiny: Path | None, rounds: int, engine_rounds: int
) -> dict[str, Any]:
    echo_model, echo_endpoint = vertex.echo_model("bench-echo")
    echo_argv = [sys.executable, "-m", "local.vertex.echo_server"]
    result: dict[str, Any] = {}
    result["echo server"] = _interleaved(
        lambda: by_hand(echo_argv, {}, "/health", tmp / "echo.log"),
        lambda: through_emulator(vertex, echo_model, echo_endpoint),
        rounds,
    )
    if tiny is not None:
        spec = {"imageUri": SERVING_IMAGE, "args": ["--model", str(tiny), "--max-model-len", "512"]}
        body = {"modelId": "bench-tiny", "model": {"displayName": "tiny", "containerSpec": spec}}
        vertex.call("POST", f"{V1}/models:upload", json=body)
        vertex.call(
            "POST",
            f"{V1}/endpoints",
            params={"endpointId": "bench-tiny"},
            json={"displayName": "t"},
        )
        argv = [sys.executable, "-m", "serving", *spec["args"]]
        result["tiny model (python -m serving)"] = _interleaved(
            lambda: by_hand(argv, CPU_SERVING_ENV, "/health", tmp / "serving.log"),
            lambda: through_emulator(
                vertex, f"{PARENT}/models/bench-tiny", f"{PARENT}/endpoints/bench-tiny"
            ),
            engine_rounds,
        )
    return result


def _interleaved(
    hand: Callable[[], float], emulated: Callable[[], float], rounds: int
) -> dict[str, float]:
    """Both ways in turns, alternating which goes first, so machine noise hits both alike."""
    by_hand_s: list[float] = []
    emulator_s: list[float] = []
    for i in range(rounds):
        pair = [(hand, by_hand_s), (emulated, emulator_s)]
        for run, into in pair if i % 2 == 0 else reversed(pair):
            into.append(run())
    return _ratio(by_hand_s, emulator_s)


def _ratio(hand: list[float], emulated: list[float]) -> dict[str, float]:
    a, b = statistics.median(hand), statistics.median(emulated)
    return {
        "by_hand_s": round(a, 2),
        "emulator_s": round(b, 2),
        "ratio": round(b / a, 2),
        "n": len(hand),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.vertex.bench", description=__doc__)
    parser.add_argument("--calls", type=int, default=300, help="samples per control call")
    parser.add_argument("--endpoints", type=int, default=1000, help="endpoints to create and list")
    parser.add_argument("--rounds", type=int, default=5, help="echo deploys each way")
    parser.add_argument("--engine-rounds", type=int, default=2, help="tiny-model deploys each way")
    parser.add_argument(
        "--tiny-model", type=Path, help="a tiny model folder: also time a real serving deploy"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vertex-bench-") as folder:
        tmp = Path(folder)
        env = dict(os.environ)
        extra = ["--log-level", "warning"]
        for key, value in CPU_SERVING_ENV.items():
            extra += ["--deployment-env", f"{key}={value}"]
        vertex = launch(tmp, *extra, "--deploy-timeout", "600", env=env)
        try:
            report = {
                "control_calls_ms": control_calls(vertex, args.calls),
                "predict_ms": predict_proxy(vertex, args.calls),
                "listing": listing(vertex, args.endpoints),
                "deploy_to_ready": deploy_overhead(
                    vertex, tmp, args.tiny_model, args.rounds, args.engine_rounds
                ),
            }
        finally:
            processes.stop(vertex.child)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
