"""The local stack starts every part, answers, refuses a second start, and stops by PID; the bridge and tick speak the real protocols."""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.names import PROJECT

from local.bridge import FINALIZED, NotANotification, make_handler, storage_event
from local.stack import down, running_state, stack_env, status, up, vertex_fidelity
from local.stack_state import (
    PartState,
    Ports,
    StackConfig,
    StackError,
    StackState,
    part_alive,
    read_state,
    write_state,
)


def push_envelope(attributes: dict[str, str], data: dict[str, Any]) -> bytes:
    """A Pub/Sub push body as the emulator and Pub/Sub itself send it."""
    return json.dumps(
        {
            "message": {
                "attributes": attributes,
                "data": base64.b64encode(json.dumps(data).encode()).decode(),
                "messageId": "17",
                "publishTime": "2026-11-27T09:00:00Z",
            },
            "subscription": "projects/p/subscriptions/s",
        }
    ).encode()


FINALIZE_ATTRIBUTES = {
    "eventType": "OBJECT_FINALIZE",
    "bucketId": "modeldrop-weights",
    "objectId": "models/m/v1/config.json",
    "objectGeneration": "5",
    "payloadFormat": "JSON_API_V1",
}


def test_a_gcs_notification_becomes_the_storage_cloudevent_eventarc_sends() -> None:
    """A finalize notification maps to type, source, subject and id as Eventarc sets them, with the object as data."""
    obj = {"bucket": "modeldrop-weights", "name": "models/m/v1/config.json", "generation": "5"}
    event = storage_event(push_envelope(FINALIZE_ATTRIBUTES, obj))
    assert event.type == FINALIZED
    assert event.source == "//storage.googleapis.com/projects/_/buckets/modeldrop-weights"
    assert event.subject == "objects/models/m/v1/config.json"
    assert event.id == "17"
    assert json.loads(event.data) == obj


def test_a_push_that_is_not_a_gcs_notification_is_refused_as_such() -> None:
    """A body without the notification attributes raises NotANotification (the bridge acks and drops it)."""
    with pytest.raises(NotANotification):
        storage_event(push_envelope({"eventType": "SOMETHING"}, {}))
    with pytest.raises(NotANotification):
        storage_event(b"not json")


class _Target(BaseHTTPRequestHandler):
    """The function's side: records each CloudEvent and answers with the server's chosen status."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        server: Any = self.server
        server.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(server.answer)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def bridge() -> Iterator[tuple[str, Any]]:
    """The bridge's HTTP handler on a loopback port, delivering to a recording target."""
    target: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    target.received, target.answer = [], 204
    handler = make_handler(f"http://127.0.0.1:{target.server_address[1]}/", 10.0, deleted=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (target, server)]
    for thread in threads:
        thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", target
    finally:
        for s in (target, server):
            s.shutdown()
            s.server_close()


def _post(url: str, body: bytes) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_the_bridge_posts_a_binary_cloudevent_and_passes_failures_back(
    bridge: tuple[str, Any],
) -> None:
    """The target gets ce-* headers and the object JSON; a 500 from it makes the push fail so Pub/Sub retries."""
    url, target = bridge
    body = push_envelope(FINALIZE_ATTRIBUTES, {"name": "models/m/v1/config.json"})
    assert _post(url, body) == 200
    headers, data = target.received[0]
    assert headers["ce-type"] == FINALIZED
    assert headers["ce-subject"] == "objects/models/m/v1/config.json"
    assert json.loads(data)["name"] == "models/m/v1/config.json"
    target.answer = 500
    assert _post(url, body) == 502
    deleted = push_envelope({**FINALIZE_ATTRIBUTES, "eventType": "OBJECT_DELETE"}, {})
    assert _post(url, deleted) == 204
    assert len(target.received) == 2  # the deletion was acknowledged, not forwarded


@pytest.mark.stack
def test_the_scheduler_publishes_ticks_to_the_sweep_topic(pubsub_host: str) -> None:
    """run() publishes a tick at once and one per interval until stopped."""
    from google.cloud import pubsub_v1

    from local.scheduler import run

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.create_topic(name=f"projects/{PROJECT}/topics/sweep-ticks").name
    sub = subscriber.create_subscription(
        name=f"projects/{PROJECT}/subscriptions/sweep-ticks-test", topic=topic
    ).name
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    sent = run(topic, 0.2, stop)
    response = subscriber.pull(subscription=sub, max_messages=50, timeout=10)
    assert sent >= 2
    assert len(response.received_messages) == sent
    assert "at" in json.loads(response.received_messages[0].message.data)


def test_a_state_file_whose_processes_are_gone_counts_as_no_stack(tmp_path: Path) -> None:
    """running_state() removes a state file left by a stack that died, so `up` can start again."""
    dead = PartState(pid=2**22 + 12345, start_ticks=1, log="x.log")
    state = StackState(
        project="p",
        region="r",
        data_dir=str(tmp_path),
        started_at=datetime.now(UTC),
        parts={"pubsub": dead},
        env={},
    )
    write_state(tmp_path, state)
    assert read_state(tmp_path) == state
    assert not part_alive(dead)
    assert running_state(tmp_path) is None
    assert read_state(tmp_path) is None


@pytest.mark.stack
def test_the_stacks_vertex_plays_the_faithful_preset_and_tells_the_sweep_its_metrics_delay(
    tmp_path: Path,
) -> None:
    """By default the emulator runs faithful at time scale 0.01 and the functions are told Monitoring's delay; legacy at scale 0 is instant."""
    faithful = StackConfig(data_dir=tmp_path)
    assert vertex_fidelity(faithful).preset == "faithful"
    assert vertex_fidelity(faithful).seconds("deploy_cpu") == pytest.approx(6.0)
    assert stack_env(faithful)["MODELDROP_METRICS_DELAY"] == "63s"
    legacy = StackConfig(data_dir=tmp_path, fidelity="legacy", time_scale=0)
    assert vertex_fidelity(legacy).seconds("deploy_cpu") == 0
    assert stack_env(legacy)["MODELDROP_METRICS_DELAY"] == "0s"
    # A rule passed through --vertex-arg counts too.
    sampled_off = StackConfig(data_dir=tmp_path, vertex_args=("--rule=metric_sampling=off",))
    assert stack_env(sampled_off)["MODELDROP_METRICS_DELAY"] == "0s"


def test_up_starts_every_part_refuses_a_second_up_and_down_stops_them(tmp_path: Path) -> None:
    """Every part answers after up(); a second up() says the stack runs; down() stops each PID and removes the state."""
    config = StackConfig(
        data_dir=tmp_path / "stack", ports=Ports().with_free_ports(), tick_s=1.0, memory_gcs=True
    )
    lines: list[str] = []
    state = up(config, progress=lines.append)
    try:
        found = status(config.data_dir)
        assert found is not None
        _, parts = found
        assert {p.name for p in parts} == {
            "pubsub",
            "gcs",
            "vertex",
            "on_upload",
            "on_command",
            "sweep",
            "gateway",
            "bridge",
            "relay",
            "gcs-front",
            "scheduler",
        }
        assert all(p.answers for p in parts), [(p.name, p.log) for p in parts if not p.answers]
        assert state.env["PUBSUB_EMULATOR_HOST"] == f"127.0.0.1:{config.ports.pubsub}"
        assert all(Path(p.log).exists() for p in parts)
        # The stack's Vertex plays Google's rules by default: an endpoint id Vertex refuses.
        refused = httpx.post(
            f"{state.vertex_endpoint}/v1/projects/{config.project}/locations/{config.region}/endpoints",
            params={"endpointId": "7b-chat"},
            json={"displayName": "x"},
            timeout=10,
        )
        assert refused.status_code == 400, refused.text
        assert state.env["MODELDROP_METRICS_DELAY"] == "63s"
        with pytest.raises(StackError, match="already running"):
            up(config)
    finally:
        stopped = down(config.data_dir)
    assert sorted(stopped) == sorted(state.parts)
    assert not any(part_alive(p) for p in state.parts.values())
    assert read_state(config.data_dir) is None
    with pytest.raises(StackError, match="no local stack"):
        down(config.data_dir)


@pytest.mark.stack
@pytest.mark.skipif(shutil.which("gcloud") is None, reason="the Google Cloud CLI is not installed")
def test_gcloud_storage_cp_into_the_local_bucket_registers_the_folder(tmp_path: Path) -> None:
    """`gcloud storage cp -r`, with the variables `local up` prints, copies a folder into the
    weights bucket (through the front that answers storageLayout) and on_upload registers it."""
    import subprocess

    from functions.world import sound_files

    from modeldrop.vertex import GapicVertex

    folder = tmp_path / "v1"
    folder.mkdir()
    for name, data in sound_files().items():
        (folder / name).write_bytes(data)
    config = StackConfig(
        data_dir=tmp_path / "stack", ports=Ports().with_free_ports(), tick_s=5.0, memory_gcs=True
    )
    state = up(config)
    try:
        env = {
            **os.environ,
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": state.env[
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE"
            ],
            "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
            "CLOUDSDK_CORE_PROJECT": state.project,
            "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        }
        copied = subprocess.run(
            [
                "gcloud",
                "storage",
                "cp",
                "-r",
                str(folder),
                "gs://modeldrop-weights/models/by-gcloud/",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert copied.returncode == 0, copied.stderr[-2000:]
        vertex = GapicVertex(state.project, state.region, state.vertex_endpoint)
        deadline = time.monotonic() + 60
        while vertex.model_version("by-gcloud", "v1") is None:
            assert time.monotonic() < deadline, "the copied folder was not registered in 60 s"
            time.sleep(0.5)
    finally:
        down(config.data_dir)


@pytest.mark.stack
def test_up_refuses_ports_that_are_taken(tmp_path: Path) -> None:
    """A busy port is named in the error before anything starts."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        ports = Ports().with_free_ports()
        config = StackConfig(data_dir=tmp_path, ports=Ports(**{**ports.__dict__, "vertex": busy}))
        with pytest.raises(StackError, match=f"{busy} \\(vertex\\)"):
            up(config)
    assert read_state(tmp_path) is None


@pytest.mark.stack
def test_down_stops_the_vertex_emulators_deployments_too(tmp_path: Path) -> None:
    """A deployment process started by the emulator (in its own session) is gone after down()."""
    from local.vertex.testing import ECHO_MAP, Running

    config = StackConfig(
        data_dir=tmp_path / "stack",
        ports=Ports().with_free_ports(),
        project="modeldrop-test",  # the project local.vertex.testing's helpers name
        memory_gcs=True,
        # local.vertex.testing's raw helpers don't wait for upload operations: instant Vertex.
        fidelity="legacy",
        time_scale=0,
        vertex_args=("--image-map", ECHO_MAP, "--health-interval", "0.2"),
    )
    state = up(config)
    try:
        vertex = Running(state.vertex_endpoint, config.ports.vertex, None, tmp_path)  # type: ignore[arg-type]
        model, endpoint = vertex.echo_model("echo-down")
        pid = int(vertex.process(vertex.deploy(model, endpoint))["pid"])
        assert part_alive(PartState(pid=pid, log=""))
    finally:
        down(config.data_dir)
    assert not part_alive(PartState(pid=pid, log=""))
