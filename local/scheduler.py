"""The local Cloud Scheduler: publish a tick to the sweep topic every N seconds."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import UTC, datetime
from types import FrameType


def tick_body(now: datetime) -> bytes:
    """What each tick carries; the sweep decides from Vertex's state, not from the tick."""
    return json.dumps({"source": "modeldrop-local-scheduler", "at": now.isoformat()}).encode()


def run(topic: str, every_s: float, stop: threading.Event) -> int:
    """Publish a tick to `topic` now and every `every_s` seconds until `stop` is set; ticks sent."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    sent = 0
    while not stop.is_set():
        try:
            publisher.publish(topic, tick_body(datetime.now(UTC))).result(timeout=10)
            sent += 1
        except Exception as error:  # noqa: BLE001 - a missed tick is logged; the next one retries
            sys.stderr.write(f"scheduler: tick not published: {error}\n")
        stop.wait(every_s)
    return sent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.scheduler", description=__doc__)
    parser.add_argument("--topic", required=True, help="projects/<project>/topics/<topic>")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between ticks")
    args = parser.parse_args(argv)
    if args.every <= 0:
        parser.error("--every must be positive")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sys.stderr.write(f"scheduler: a tick to {args.topic} every {args.every:g}s\n")
    sent = run(args.topic, args.every, stop)
    sys.stderr.write(f"scheduler: stopped after {sent} ticks\n")


if __name__ == "__main__":
    main()
