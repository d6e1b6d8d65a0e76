"""The three entry points served by functions-framework, fed real CloudEvents over HTTP."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from functions.world import World, make_world, sound_files
from support.builders import make_command

from local.processes import Child, ProcessError, free_port, start, stop
from modeldrop.events import PUBSUB_PUBLISHED, STORAGE_FINALIZED
from modeldrop.results import Status

pytestmark = pytest.mark.stack
SOURCE = Path(__file__).resolve().parents[2] / "functions" / "main.py"
FRAMEWORK = Path(sys.executable).parent / "functions-framework"


@contextmanager
def serving(world: World, target: str, log_dir: Path) -> Iterator[str]:
    """`target` in its own functions-framework process on 127.0.0.1, with the world's environment."""
    port = free_port()
    argv = [
        str(FRAMEWORK),
        "--source",
        str(SOURCE),
        "--target",
        target,
        "--signature-type",
        "cloudevent",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    child = start(target, argv, log_dir / f"{target}-{port}.log", env={**os.environ, **world.env()})
    try:
        wait_loaded(f"http://127.0.0.1:{port}/", child)
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop(child)


def wait_loaded(url: str, child: Child, timeout_s: float = 30.0) -> None:
    """Until functions-framework answers at all (GET / on an event function is a 4xx once loaded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.alive():
            raise ProcessError(f"{child.name} exited:\n{child.log_tail()}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise ProcessError(f"{url} not answering after {timeout_s} s:\n{child.log_tail()}")


def post(url: str, event: CloudEvent) -> int:
    headers, body = to_binary(event)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def storage_event(world: World, name: str, generation: int) -> CloudEvent:
    bucket = world.settings.weights_bucket
    attributes = {
        "type": STORAGE_FINALIZED,
        "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "subject": f"objects/{name}",
    }
    return CloudEvent(attributes, {"bucket": bucket, "name": name, "generation": str(generation)})


def pubsub_event(body: bytes) -> CloudEvent:
    attributes = {"type": PUBSUB_PUBLISHED, "source": "//pubsub.googleapis.com/projects/p/topics/t"}
    return CloudEvent(
        attributes, {"message": {"data": base64.b64encode(body).decode(), "messageId": "1"}}
    )


def test_upload_command_and_sweep_over_http(vertex_url: str, logs_dir: Path) -> None:
    """Storage events register the folder, a deploy message starts it, a sweep tick reports ready; a poison message is acked."""
    world = make_world(vertex_url)
    with (
        serving(world, "on_upload", logs_dir) as upload_url,
        serving(world, "on_command", logs_dir) as command_url,
        serving(world, "sweep", logs_dir) as sweep_url,
    ):
        for name, data in sound_files().items():
            generation = world.put("over-http", "v1", name, data)
            assert (
                post(upload_url, storage_event(world, f"models/over-http/v1/{name}", generation))
                == 200
            )
        assert [r.status for r in world.results(until=lambda rs: len(rs) >= 1)] == [
            Status.REGISTERED
        ]
        command = {
            **make_command("deploy", model="over-http", machine_type="n1-standard-4"),
            "accelerator": None,
        }
        assert post(command_url, pubsub_event(json.dumps(command).encode())) == 200
        assert post(command_url, pubsub_event(b"{not json")) == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert post(sweep_url, pubsub_event(b"tick")) == 200
            if any(
                r.request_id == command["request_id"] and r.terminal
                for r in world.results(timeout_s=0)
            ):
                break
            time.sleep(0.3)
    statuses = {(r.request_id, r.status) for r in world.seen}
    assert (command["request_id"], Status.ACCEPTED) in statuses and (
        command["request_id"],
        Status.READY,
    ) in statuses
    assert any(r.request_id == "invalid-1" and r.status is Status.FAILED for r in world.seen)


def test_a_transient_error_is_answered_with_a_retryable_status(
    vertex_url: str, logs_dir: Path
) -> None:
    """When Vertex is unreachable, the function answers 503 so the platform redelivers, logging one
    WARNING line and no traceback (an expected retry is nothing for a person to look at)."""
    world = make_world("http://127.0.0.1:9")
    for name, data in sound_files().items():
        world.put("unreachable", "v1", name, data)
    before = set(logs_dir.glob("on_upload-*.log"))
    with serving(world, "on_upload", logs_dir) as url:
        assert post(url, storage_event(world, "models/unreachable/v1/config.json", 1)) == 503
    assert world.results(timeout_s=0.5) == []
    (log,) = set(logs_dir.glob("on_upload-*.log")) - before
    text = log.read_text()
    assert "Traceback" not in text and '"ERROR"' not in text
    assert text.count("upload event redelivered later") == 1
