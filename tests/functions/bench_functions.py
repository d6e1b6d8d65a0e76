"""Benchmark of the functions on this machine: import, cold start, event -> Vertex call, a 1,000-endpoint sweep.

Run from the repo root: `.venv/bin/python tests/functions/bench_functions.py [--endpoints 1000]`.
It starts its own Pub/Sub emulator, fake-gcs-server and Vertex emulator on free 127.0.0.1 ports.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from support.builders import make_command  # noqa: E402
from support.names import GCS_TOPIC, PROJECT  # noqa: E402

from local.gcs_emulator import start_gcs  # noqa: E402
from local.processes import free_port, start, stop  # noqa: E402
from local.pubsub_emulator import start_pubsub  # noqa: E402
from local.vertex.testing import launch  # noqa: E402


def import_main(runs: int) -> list[float]:
    code = "import time; t = time.perf_counter(); import main; print(time.perf_counter() - t)"
    python = str(ROOT / ".venv" / "bin" / "python")
    return [
        float(
            subprocess.run(
                [python, "-c", code],
                cwd=ROOT / "functions",
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for _ in range(runs)
    ]


def post(url: str, body: bytes) -> int:
    import base64

    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    event = CloudEvent(
        {"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub"},
        {
            "message": {
                "data": base64.b64encode(body).decode(),
                "messageId": str(time.monotonic_ns()),
            }
        },
    )
    headers, data = to_binary(event)
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def cold_starts(world: object, runs: int, logs: Path) -> tuple[list[float], list[float]]:
    """Process start -> first deploy handled (200), then warm event -> Vertex call started (the function returns right after)."""
    from functions.world import World

    assert isinstance(world, World)
    framework = str(ROOT / ".venv" / "bin" / "functions-framework")
    cold, warm = [], []
    for run in range(runs):
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        body = json.dumps(
            {
                **make_command(
                    "deploy", model="bench", endpoint=f"cold-{run}", machine_type="n1-standard-4"
                ),
                "accelerator": None,
            }
        ).encode()
        argv = [
            framework,
            "--source",
            str(ROOT / "functions" / "main.py"),
            "--target",
            "on_command",
            "--signature-type",
            "cloudevent",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        t0 = time.perf_counter()
        child = start(
            "on_command", argv, logs / f"cold-{run}.log", env={**os.environ, **world.env()}
        )
        try:
            while post(url, body) == 0:
                time.sleep(0.01)
            cold.append(time.perf_counter() - t0)
            body = json.dumps(
                {
                    **make_command(
                        "deploy",
                        model="bench",
                        endpoint=f"warm-{run}",
                        machine_type="n1-standard-4",
                    ),
                    "accelerator": None,
                }
            ).encode()
            t1 = time.perf_counter()
            status = post(url, body)
            if status != 200:
                raise RuntimeError(f"on_command answered {status}:\n{child.log_tail()}")
            warm.append(time.perf_counter() - t1)
        finally:
            stop(child)
    return cold, warm


def baseline_cold_starts(runs: int, logs: Path) -> list[float]:
    """The same measure for a do-nothing CloudEvent function: what functions-framework itself costs here."""
    source = logs / "trivial_main.py"
    source.write_text(
        "import functions_framework\n\n\n@functions_framework.cloud_event\ndef noop(event):\n    return None\n"
    )
    framework = str(ROOT / ".venv" / "bin" / "functions-framework")
    times = []
    for run in range(runs):
        port = free_port()
        argv = [
            framework,
            "--source",
            str(source),
            "--target",
            "noop",
            "--signature-type",
            "cloudevent",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        t0 = time.perf_counter()
        child = start("noop", argv, logs / f"noop-{run}.log")
        try:
            while post(f"http://127.0.0.1:{port}/", b"{}") == 0:
                time.sleep(0.01)
            times.append(time.perf_counter() - t0)
        finally:
            stop(child)
    return times


def big_sweep(world: object, endpoints: int, vertex_url: str) -> dict[str, float]:
    from functions.world import World

    from modeldrop import labels
    from modeldrop.sweeper import sweep

    assert isinstance(world, World)
    t0 = time.perf_counter()
    for n in range(endpoints):
        body = json.dumps(
            {"displayName": f"bench-{n}", "labels": labels.endpoint_labels("bench", 1800, False)}
        ).encode()
        project = world.settings.project
        url = f"{vertex_url}/v1/projects/{project}/locations/us-central1/endpoints?endpointId=bench-{n}"
        urllib.request.urlopen(
            urllib.request.Request(
                url, data=body, headers={"content-type": "application/json"}, method="POST"
            ),
            timeout=30,
        ).close()
        # Every endpoint a command touched keeps a (released) lease object in the state bucket.
        world.ctx.state.release(
            f"bench-{n}", world.ctx.state.acquire(f"bench-{n}", "bench", datetime.now(UTC))
        )
    created = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t1 = time.perf_counter()
        summary = sweep(world.ctx, datetime.now(UTC))
        times.append(time.perf_counter() - t1)
    return {
        "created_s": created,
        "sweep_s": statistics.median(times),
        "endpoints": summary.endpoints,
        "monitoring_queries": summary.monitoring_queries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    imports = import_main(args.runs)
    print(
        f"import main: median {statistics.median(imports):.3f} s (max {max(imports):.3f} s, {args.runs} runs)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        from google.cloud import pubsub_v1

        pubsub = start_pubsub(free_port(), logs / "pubsub.log")
        os.environ["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{pubsub.popen.args[-1].split('=')[-1]}"
        publisher = pubsub_v1.PublisherClient()
        publisher.create_topic(name=publisher.topic_path(PROJECT, GCS_TOPIC))
        gcs_port = free_port()
        gcs = start_gcs(
            gcs_port, logs / "gcs.log", os.environ["PUBSUB_EMULATOR_HOST"], PROJECT, GCS_TOPIC
        )
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{gcs_port}"
        vertex = launch(logs / "vertex")
        try:
            from functions.world import make_world, sound_files

            from modeldrop.events import StorageObject
            from modeldrop.uploads import on_object

            world = make_world(vertex.url)
            for name, data in sound_files().items():
                world.put("bench", "v1", name, data)
            on_object(
                StorageObject(
                    bucket=world.settings.weights_bucket,
                    name="models/bench/v1/config.json",
                    generation=1,
                ),
                world.ctx,
                datetime.now(UTC),
            )
            baseline = baseline_cold_starts(args.runs, logs)
            cold, warm = cold_starts(world, args.runs, logs)
            print(
                f"cold start of a do-nothing function (same measure, baseline): median {statistics.median(baseline):.3f} s (max {max(baseline):.3f} s)"
            )
            print(
                f"cold start (process start -> first deploy command handled): median {statistics.median(cold):.3f} s (max {max(cold):.3f} s)"
            )
            print(
                f"warm event -> Vertex deploy started (function returned): median {statistics.median(warm):.3f} s (max {max(warm):.3f} s)"
            )
            figures = big_sweep(world, args.endpoints, vertex.url)
            print(
                f"sweep over {figures['endpoints']} managed endpoints: median {figures['sweep_s']:.3f} s, {figures['monitoring_queries']} Monitoring queries (setup {figures['created_s']:.1f} s)"
            )
        finally:
            for child in (vertex.child, gcs, pubsub):
                stop(child)


if __name__ == "__main__":
    main()
