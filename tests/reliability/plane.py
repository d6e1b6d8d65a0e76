"""The control plane as it runs locally, for one test module: real emulators, functions in functions-framework, push subscriptions."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from functions.world import World
from support.names import GCS_TOPIC, PROJECT

from local.processes import Child, ProcessError, free_port, start, stop, wait_http
from local.stack_pubsub import PubSubAdmin
from local.vertex.testing import Running
from modeldrop.results import Result

REPO = Path(__file__).resolve().parents[2]
CRASHING_SOURCE = Path(__file__).with_name("crashing_main.py")
# Where crashing_main can stop on_command in a deploy: lease taken; intent recorded; deploy started
# on Vertex but its operation not recorded; operation recorded but no result published.
CRASH_STEPS = ("after-lease", "after-intent", "after-deploy-started", "after-recorded")
FUNCTION_SOURCE = REPO / "functions" / "main.py"
# Pub/Sub's minimum backoff is 1 s; a killed function is back before the fifth attempt.
MAX_DELIVERY_ATTEMPTS = 10


@dataclass
class Plane:
    """Everything of one module's control plane: the World (buckets, topics, in-process adapters) and its processes."""

    world: World
    vertex: Running
    logs: Path
    env: dict[str, str]
    functions: dict[str, Child] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    subscriptions: list[str] = field(default_factory=list)
    bridge: Child | None = None
    relay: Child | None = None
    bridge_url: str = ""
    ticks: int = 0

    # Processes --------------------------------------------------------------------------------

    def start_function(self, target: str, source: Path = FUNCTION_SOURCE, **env: str) -> Child:
        """Start (or restart, on the same port) one function in functions-framework."""
        port = self.ports.setdefault(target, free_port())
        argv = [sys.executable, "-m", "functions_framework", "--source", str(source)]
        argv += ["--target", target, "--signature-type", "cloudevent"]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        child = start(target, argv, self.logs / f"{target}.log", env={**self.env, **env}, cwd=REPO)
        _wait_up(f"http://127.0.0.1:{port}/", child)
        self.functions[target] = child
        return child

    def kill(self, target: str) -> None:
        """Kill a function's process group by its PID, with no grace (a crash, not a shutdown)."""
        stop(self.functions[target], grace_s=0)

    @property
    def project(self) -> str:
        return self.world.settings.project

    def logs_tail(self, lines: int = 15) -> str:
        """The last lines of each function's and the bridge's log, for a failing assertion's message."""
        children = [*self.functions.values(), *([self.bridge] if self.bridge else [])]
        return "\n".join(f"--- {c.name}\n{c.log_tail(lines)}" for c in children)

    def url(self, target: str) -> str:
        return f"http://127.0.0.1:{self.ports[target]}/"

    def alive(self) -> dict[str, bool]:
        return {name: child.alive() for name, child in self.functions.items()}

    # Traffic in -------------------------------------------------------------------------------

    def publish(self, body: dict[str, Any] | bytes, attempts: int = 1) -> list[str]:
        """Publish a command `attempts` times (duplicates as Pub/Sub makes them); the message ids."""
        from google.cloud import pubsub_v1

        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        publisher = pubsub_v1.PublisherClient()
        topic = publisher.topic_path(self.project, self.world.settings.commands_topic)
        futures = [publisher.publish(topic, data) for _ in range(attempts)]
        return [f.result(timeout=30) for f in futures]

    def tick(self) -> int:
        """One scheduler tick, delivered to the sweep function; its HTTP status once the sweep ends."""
        self.ticks += 1
        return post_pubsub_event(self.url("sweep"), json.dumps({"tick": self.ticks}).encode())

    def notifications(self, settle_s: float = 1.5, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """The weights bucket's GCS notifications so far (pulled and acked), as push messages."""
        from google.cloud import pubsub_v1

        subscriber = pubsub_v1.SubscriberClient()
        name = subscriber.subscription_path(PROJECT, f"{self.world.settings.weights_bucket}-tap")
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < settle_s:
            response = subscriber.pull(subscription=name, max_messages=200, timeout=5)
            if not response.received_messages:
                time.sleep(0.2)
                continue
            quiet_since = time.monotonic()
            subscriber.acknowledge(
                subscription=name, ack_ids=[m.ack_id for m in response.received_messages]
            )
            for received in response.received_messages:
                message = received.message
                if message.attributes.get("bucketId") != self.world.settings.weights_bucket:
                    continue  # the state bucket's writes notify too
                found.append(
                    {
                        "data": base64.b64encode(message.data).decode(),
                        "attributes": dict(message.attributes),
                        "messageId": message.message_id,
                        "publishTime": message.publish_time.isoformat(),
                    }
                )
        return found

    def deliver_uploads(
        self, messages: list[dict[str, Any]], copies: list[int], seed: int = 0, at_once: int = 8
    ) -> dict[str, int]:
        """Push each notification copies[i] times, all shuffled, `at_once` at a time, to the bridge; a non-2xx is redelivered, as Pub/Sub does."""
        import random
        from concurrent.futures import ThreadPoolExecutor

        deliveries = [m for m, n in zip(messages, copies, strict=True) for _ in range(n)]
        random.Random(seed).shuffle(deliveries)
        redelivered = 0

        def push(message: dict[str, Any]) -> int:
            nonlocal redelivered
            body = json.dumps({"message": message, "subscription": "tap"}).encode()
            for attempt in range(MAX_DELIVERY_ATTEMPTS):
                request = urllib.request.Request(
                    self.bridge_url, data=body, headers={"content-type": "application/json"}
                )
                try:
                    with urllib.request.urlopen(request, timeout=120) as response:
                        return int(response.status)
                except urllib.error.HTTPError:
                    redelivered += 1
                    time.sleep(1.0 + attempt)
            return 0

        with ThreadPoolExecutor(max_workers=at_once) as pool:
            statuses = list(pool.map(push, deliveries))
        return {
            "deliveries": len(deliveries),
            "redelivered": redelivered,
            "acked": sum(1 for s in statuses if 200 <= s < 300),
        }

    # Results out ------------------------------------------------------------------------------

    def terminal(self, request_ids: Iterable[str], timeout_s: float) -> dict[str, list[Result]]:
        """Terminal results of each request id, waiting until each has one (or time is up)."""
        wanted = set(request_ids)

        def have_all(results: list[Result]) -> bool:
            return wanted <= {r.request_id for r in results if r.terminal}

        seen = self.world.results(until=have_all, timeout_s=timeout_s)
        return {
            rid: [r for r in seen if r.request_id == rid and r.terminal] for rid in sorted(wanted)
        }

    def wait_uploads(self, folders: Iterable[tuple[str, str]], timeout_s: float) -> list[Result]:
        """Every upload result so far, waiting until each (model, version) folder has a terminal one."""
        wanted = set(folders)

        def have_all(results: list[Result]) -> bool:
            done = {(r.model, r.version) for r in results if r.kind == "upload" and r.terminal}
            return wanted <= done

        seen = self.world.results(until=have_all, timeout_s=timeout_s)
        return [r for r in seen if r.kind == "upload"]

    def sweep_until(
        self, done: Callable[[], bool], max_ticks: int, pause_s: float = 1.0, at_once: int = 1
    ) -> int:
        """Tick until `done()` holds, each tick delivered `at_once` times concurrently; the ticks it took (max_ticks + 1 if it never did)."""
        from concurrent.futures import ThreadPoolExecutor

        for n in range(1, max_ticks + 1):
            with ThreadPoolExecutor(max_workers=at_once) as pool:
                list(pool.map(lambda _: self.tick(), range(at_once)))
            self.world.results(timeout_s=0)
            if done():
                return n
            time.sleep(pause_s)
        return max_ticks + 1

    def answered(self, request_ids: Iterable[str]) -> bool:
        """True once every request id has a terminal result (pulling what arrived)."""
        seen = self.world.results(timeout_s=0)
        return set(request_ids) <= {r.request_id for r in seen if r.terminal}

    def function_errors(self) -> int:
        """How many invocations the functions failed (each one is redelivered by Pub/Sub)."""
        return sum(
            c.log_path.read_text(errors="replace").count("Exception on /")
            for c in self.functions.values()
            if c.log_path.exists()
        )

    def error_lines(self) -> list[str]:
        """Log lines at ERROR (or worse) in the functions' logs: what a person would be paged for."""
        found = []
        for child in self.functions.values():
            if child.log_path.exists():
                for line in child.log_path.read_text(errors="replace").splitlines():
                    if '"severity": "ERROR"' in line or '"severity": "CRITICAL"' in line:
                        found.append(f"{child.name}: {line[:300]}")
        return found

    def redeliveries(self) -> int:
        """Command deliveries after a first one failed (the relay logs every attempt)."""
        if self.relay is None or not self.relay.log_path.exists():
            return 0
        text = self.relay.log_path.read_text(errors="replace")
        return sum(
            1 for line in text.splitlines() if " attempt " in line and " attempt 1 " not in line
        )

    def lease_holders(self) -> dict[str, str]:
        """Endpoint -> the request holding its lease, for every lease still held."""
        from modeldrop.records import Lease

        storage, bucket = self.world.ctx.storage, self.world.settings.state_bucket
        held = {}
        for obj in storage.list_objects(bucket, "leases/"):
            current = storage.read(bucket, obj.name)
            if current is not None:
                lease = Lease.model_validate_json(current.data)
                if lease.holder:
                    held[obj.name.removeprefix("leases/").removesuffix(".json")] = lease.holder
        return held

    def dead_letters(self, timeout_s: float = 2.0) -> list[bytes]:
        """Messages Pub/Sub gave up on (the dead-letter topic's pull subscription)."""
        from google.cloud import pubsub_v1

        subscriber = pubsub_v1.SubscriberClient()
        name = subscriber.subscription_path(
            self.project, f"{self.world.settings.commands_topic}-dlq"
        )
        response = subscriber.pull(subscription=name, max_messages=100, timeout=timeout_s)
        return [m.message.data for m in response.received_messages]


def _wait_up(url: str, child: Child, timeout_s: float = 60.0) -> None:
    """Until `url` answers at all (a cloudevent function answers GET with 405); fail fast if it exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not child.alive():
            raise ProcessError(f"{child.name} exited before it was ready:\n{child.log_tail()}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise ProcessError(
        f"{child.name} did not answer at {url} in {timeout_s:.0f}s:\n{child.log_tail()}"
    )


def post_pubsub_event(url: str, data: bytes, timeout_s: float = 120.0) -> int:
    """POST a messagePublished CloudEvent (binary mode), as Eventarc delivers one; the HTTP status."""
    message = {
        "data": base64.b64encode(data).decode(),
        "messageId": uuid.uuid4().hex,
        "publishTime": datetime.now(UTC).isoformat(),
    }
    headers = {
        "ce-specversion": "1.0",
        "ce-id": message["messageId"],
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/modeldrop/topics/modeldrop-sweep",
        "content-type": "application/json",
    }
    request = urllib.request.Request(
        url, data=json.dumps({"message": message}).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def start_plane(world: World, vertex: Running, logs: Path, crash_at: str | None = None) -> Plane:
    """The three functions, the storage-event bridge, and push subscriptions from the world's topics."""
    from google.cloud import pubsub_v1

    env = {
        **os.environ,
        **world.env(),
        "PYTHONPATH": os.pathsep.join([str(REPO / "functions"), str(REPO)]),
        "PYTHONUNBUFFERED": "1",
    }
    plane = Plane(world, vertex, logs, env)
    plane.start_function("sweep")
    plane.start_function("on_upload")
    plane.start_function("on_command", CRASHING_SOURCE if crash_at else FUNCTION_SOURCE)
    bridge_port = free_port()
    plane.bridge = start(
        "bridge",
        [
            sys.executable,
            "-m",
            "local.bridge",
            "--port",
            str(bridge_port),
            "--target",
            plane.url("on_upload"),
        ],
        logs / "bridge.log",
        env=env,
        cwd=REPO,
    )
    wait_http(f"http://127.0.0.1:{bridge_port}/", plane.bridge, timeout_s=30)
    admin = PubSubAdmin(os.environ["PUBSUB_EMULATOR_HOST"], plane.project)
    subscriber = pubsub_v1.SubscriberClient()
    commands = world.settings.commands_topic
    dead_letter = f"{commands}-dead-letter"
    admin.create_topics((dead_letter,))
    admin.create_pull(f"{commands}-dlq", dead_letter)
    pushes = [
        (
            f"{commands}-push",
            commands,
            plane.url("on_command") + f"projects/{plane.project}/topics/{commands}",
        ),
    ]
    # Delivered as Pub/Sub's push subscriptions deliver (retry policy 1-5 s, dead letters), by
    # local.relay, as the local stack does: the emulator's own push retries are not Pub/Sub's.
    routes = []
    for name, topic, endpoint in pushes:
        subscriber.create_subscription(
            request={
                "name": admin.subscription_path(name),
                "topic": admin.topic_path(topic),
                "ack_deadline_seconds": 600,
            }
        )
        plane.subscriptions.append(admin.subscription_path(name))
        routes += [
            "--route",
            f"{admin.subscription_path(name)}={endpoint},dead_letter={admin.topic_path(dead_letter)}"
            f",attempts={MAX_DELIVERY_ATTEMPTS},min=1,max=5,deadline=60",
        ]
    plane.relay = start(
        "relay",
        [sys.executable, "-m", "local.relay", *routes],
        logs / "relay.log",
        env=env,
        cwd=REPO,
    )
    plane.subscriptions.append(admin.subscription_path(f"{commands}-dlq"))
    # GCS notifications are pulled by the test and pushed to the bridge by `deliver_uploads`, so a
    # test decides how often and in which order each one arrives.
    admin.close()
    admin = PubSubAdmin(os.environ["PUBSUB_EMULATOR_HOST"], PROJECT)  # the GCS emulator's topic
    admin.create_pull(f"{world.settings.weights_bucket}-tap", GCS_TOPIC)
    plane.subscriptions.append(admin.subscription_path(f"{world.settings.weights_bucket}-tap"))
    plane.bridge_url = f"http://127.0.0.1:{bridge_port}/"
    admin.close()
    return plane


def stop_plane(plane: Plane) -> None:
    """Delete the push subscriptions first (nothing more arrives), then stop every process by PID."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    for name in plane.subscriptions:
        try:
            subscriber.delete_subscription(subscription=name)
        except Exception:  # noqa: BLE001 - already gone is fine at teardown
            pass
    if plane.relay is not None:
        stop(plane.relay, grace_s=5)
    for child in [*plane.functions.values(), *([plane.bridge] if plane.bridge else [])]:
        stop(child, grace_s=5)
