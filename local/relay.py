"""Push delivery for the local stack, done the way Pub/Sub documents it rather than as its emulator does.

The Pub/Sub emulator's push retries are not Pub/Sub's: a failed push is retried a few times within
seconds, then not for many minutes, and its dead-letter policy is not applied, so a command that
met a busy endpoint could wait unanswered far past any timeout. This relay pulls each
subscription and POSTs every message to its endpoint in Pub/Sub's push format, and on failure
retries as a push subscription's retry policy says: exponential backoff between a minimum and a
maximum, then, after `max_delivery_attempts`, the message is published to the dead-letter topic
with Pub/Sub's `CloudPubSubDeadLetterSource*` attributes and acknowledged. (Pub/Sub docs: "Handle
message failures" — retry policy and dead-letter topics; "Push subscriptions" — the push body.)
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

# A push waits this long for the endpoint's answer (Pub/Sub's push deadline is the ack deadline).
DEFAULT_DEADLINE_S = 600.0


@dataclass(frozen=True)
class Route:
    """Messages of pull `subscription` go to `endpoint`; failures dead-letter to `dead_letter_topic`."""

    subscription: str  # projects/<p>/subscriptions/<s>
    endpoint: str
    dead_letter_topic: str | None
    max_attempts: int = 5
    min_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    deadline_s: float = DEFAULT_DEADLINE_S

    @classmethod
    def parse(cls, spec: str) -> Route:
        """`SUBSCRIPTION=ENDPOINT[,dead_letter=TOPIC][,attempts=N][,min=S][,max=S][,deadline=S]`."""
        subscription, _, rest = spec.partition("=")
        endpoint, *options = rest.split(",")
        fields: dict[str, Any] = {}
        for option in options:
            key, _, value = option.partition("=")
            if key == "dead_letter":
                fields["dead_letter_topic"] = value
            elif key == "attempts":
                fields["max_attempts"] = int(value)
            elif key in ("min", "max", "deadline"):
                fields[{"min": "min_backoff_s", "max": "max_backoff_s"}.get(key, "deadline_s")] = (
                    float(value)
                )
            else:
                raise ValueError(f"unknown route option {key!r} in {spec!r}")
        if not subscription or not endpoint:
            raise ValueError(f"a route is SUBSCRIPTION=ENDPOINT[,options]: {spec!r}")
        return cls(subscription, endpoint, fields.pop("dead_letter_topic", None), **fields)

    def backoff_s(self, attempt: int) -> float:
        """The pause after failed attempt `attempt` (1-based): doubling from min, capped at max."""
        return float(min(self.max_backoff_s, self.min_backoff_s * 2 ** (attempt - 1)))


def push_body(route: Route, message: Any, attempt: int) -> bytes:
    """The JSON a push subscription POSTs: the message (data base64) and the delivery attempt."""
    return json.dumps(
        {
            "message": {
                "data": base64.b64encode(message.data).decode(),
                "attributes": dict(message.attributes),
                "messageId": message.message_id,
                "message_id": message.message_id,
                "publishTime": message.publish_time.isoformat(),
                "publish_time": message.publish_time.isoformat(),
            },
            "subscription": route.subscription,
            "deliveryAttempt": attempt,
        }
    ).encode()


def post(endpoint: str, body: bytes, timeout_s: float) -> tuple[int, str]:
    """POST `body`; the status (599 unreachable) and a short error text."""
    request = urllib.request.Request(
        endpoint, data=body, headers={"content-type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), ""
    except urllib.error.HTTPError as error:
        return int(error.code), f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        return 599, str(error)[:200]


class Relay:
    """Every route's pull loop, and a pool that delivers (and retries) each message."""

    def __init__(self, routes: list[Route], workers: int = 16) -> None:
        from google.cloud import pubsub_v1

        self.routes = routes
        self.subscriber = pubsub_v1.SubscriberClient()
        self.publisher = pubsub_v1.PublisherClient()
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.stopping = threading.Event()

    def run(self) -> None:
        loops = [threading.Thread(target=self._pull, args=(r,), daemon=True) for r in self.routes]
        for loop in loops:
            loop.start()
        self.stopping.wait()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _pull(self, route: Route) -> None:
        while not self.stopping.is_set():
            try:
                response = self.subscriber.pull(
                    subscription=route.subscription, max_messages=16, timeout=30
                )
            except Exception as error:  # noqa: BLE001 - the emulator restarting, a deadline: pull again
                log(f"pull {route.subscription}: {type(error).__name__}: {error}")
                self.stopping.wait(1.0)
                continue
            for received in response.received_messages:
                # The relay holds each message until it is answered: its ack deadline is kept
                # beyond the delivery (and the retries), so the emulator never redelivers it too.
                self._extend(route, received.ack_id)
                self.pool.submit(self._deliver, route, received)

    def _deliver(self, route: Route, received: Any) -> None:
        message = received.message
        attempt, error = 0, ""
        while not self.stopping.is_set():
            attempt += 1
            status, error = post(
                route.endpoint, push_body(route, message, attempt), route.deadline_s
            )
            log(f"{route.subscription} {message.message_id} attempt {attempt} -> {status}")
            if 200 <= status < 300 or status == 102:
                self._ack(route, received.ack_id)
                return
            if route.dead_letter_topic and attempt >= route.max_attempts:
                self._dead_letter(route, message, attempt, error)
                self._ack(route, received.ack_id)
                return
            pause = route.backoff_s(attempt)
            self._extend(route, received.ack_id, pause)
            self.stopping.wait(pause)

    def _dead_letter(self, route: Route, message: Any, attempt: int, error: str) -> None:
        project, _, subscription = route.subscription.removeprefix("projects/").partition(
            "/subscriptions/"
        )
        attributes = {
            **dict(message.attributes),
            "CloudPubSubDeadLetterSourceDeliveryCount": str(attempt),
            "CloudPubSubDeadLetterSourceSubscription": subscription,
            "CloudPubSubDeadLetterSourceSubscriptionProject": project,
            "CloudPubSubDeadLetterSourceTopicPublishTime": message.publish_time.isoformat(),
            "CloudPubSubDeadLetterSourceDeliveryErrorMessage": error or "push failed",
        }
        topic = route.dead_letter_topic or ""
        self.publisher.publish(topic, message.data, **attributes).result(30)
        log(f"{route.subscription} {message.message_id} dead-lettered after {attempt} attempts")

    def _extend(self, route: Route, ack_id: str, extra_s: float = 0.0) -> None:
        seconds = int(min(600, route.deadline_s + extra_s + 30))
        try:
            self.subscriber.modify_ack_deadline(
                subscription=route.subscription, ack_ids=[ack_id], ack_deadline_seconds=seconds
            )
        except Exception as error:  # noqa: BLE001 - redelivered then: delivery stays at least once
            log(f"extend {route.subscription}: {error}")

    def _ack(self, route: Route, ack_id: str) -> None:
        try:
            self.subscriber.acknowledge(subscription=route.subscription, ack_ids=[ack_id])
        except Exception as error:  # noqa: BLE001 - redelivered then, and handled idempotently
            log(f"ack {route.subscription}: {error}")


def log(line: str) -> None:
    sys.stderr.write(f"relay: {line}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.relay", description=__doc__)
    parser.add_argument(
        "--route",
        action="append",
        required=True,
        type=Route.parse,
        help="SUBSCRIPTION=ENDPOINT[,dead_letter=TOPIC][,attempts=N][,min=S][,max=S][,deadline=S]",
    )
    args = parser.parse_args(argv)
    relay = Relay(args.route)
    signal.signal(signal.SIGTERM, lambda *_: relay.stopping.set())
    for route in args.route:
        log(f"{route.subscription} -> {route.endpoint}")
    try:
        relay.run()
    except KeyboardInterrupt:
        relay.stopping.set()
    time.sleep(0.1)


if __name__ == "__main__":
    main()
