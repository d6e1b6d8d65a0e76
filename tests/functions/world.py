"""A control plane wired to the real emulators, with its own buckets and topics, for one test."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from support.builders import make_env, make_safetensors
from support.names import PROJECT

from modeldrop.config import Settings
from modeldrop.context import Context, build
from modeldrop.results import Result

_ids = itertools.count(1)
CONFIG = {"architectures": ["GemmaForCausalLM"], "model_type": "gemma", "head_dim": 64}


@dataclass
class World:
    """Settings, the real adapters, and a pull subscription on the results topic."""

    settings: Settings
    ctx: Context
    results_subscription: str
    commands_subscription: str
    seen: list[Result] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {f"MODELDROP_{k.upper()}": str(v) for k, v in _env_fields(self.settings).items()}

    def put(
        self,
        model: str,
        version: str,
        name: str,
        data: bytes,
        metadata: dict[str, str] | None = None,
    ) -> int:
        """Upload one file into models/<model>/<version>/ (with custom `metadata`); its generation."""
        from google.cloud import storage

        blob = (
            storage.Client(project=PROJECT)
            .bucket(self.settings.weights_bucket)
            .blob(f"models/{model}/{version}/{name}")
        )
        blob.metadata = metadata
        blob.upload_from_string(data)
        return int(blob.generation)

    def results(
        self, until: Callable[[list[Result]], bool] = lambda r: True, timeout_s: float = 10.0
    ) -> list[Result]:
        """Every result published so far (pulled and acked), waiting until `until` holds or time is up."""
        from google.cloud import pubsub_v1

        subscriber = pubsub_v1.SubscriberClient()
        deadline = time.monotonic() + timeout_s
        while True:
            # A pull that may wait holds until a message comes or its deadline: a caller polling
            # (timeout_s 0, between sweeps) asks for what is there now.
            response = subscriber.pull(
                subscription=self.results_subscription,
                max_messages=100,
                return_immediately=timeout_s <= 0,
                timeout=5,
            )
            if response.received_messages:
                subscriber.acknowledge(
                    subscription=self.results_subscription,
                    ack_ids=[m.ack_id for m in response.received_messages],
                )
                self.seen += [
                    Result.model_validate_json(m.message.data) for m in response.received_messages
                ]
            if until(self.seen) or time.monotonic() > deadline:
                return list(self.seen)
            time.sleep(0.1)

    def commands(self, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        from google.cloud import pubsub_v1

        subscriber = pubsub_v1.SubscriberClient()
        response = subscriber.pull(
            subscription=self.commands_subscription, max_messages=100, timeout=timeout_s
        )
        if response.received_messages:
            subscriber.acknowledge(
                subscription=self.commands_subscription,
                ack_ids=[m.ack_id for m in response.received_messages],
            )
        return [json.loads(m.message.data) for m in response.received_messages]


@dataclass
class DeadLetterTopic:
    """The dead-letter topic with the pull subscription the sweep answers from (the world's
    `dead_letter_subscription` setting), as Pub/Sub fills it."""

    topic: str
    subscription: str

    @classmethod
    def create(cls, world: World) -> DeadLetterTopic:
        from google.cloud import pubsub_v1

        name = world.settings.dead_letter_subscription
        assert name, "make the world with dead_letter_subscription=..."
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        topic = publisher.topic_path(world.settings.project, "dead-letter")
        subscription = subscriber.subscription_path(world.settings.project, name)
        publisher.create_topic(name=topic)
        subscriber.create_subscription(name=subscription, topic=topic)
        return cls(topic, subscription)

    def publish(self, data: bytes, delivery_count: int) -> None:
        """A letter as Pub/Sub dead-letters it, with the attempts it made."""
        from google.cloud import pubsub_v1

        attributes = {"CloudPubSubDeadLetterSourceDeliveryCount": str(delivery_count)}
        pubsub_v1.PublisherClient().publish(self.topic, data, **attributes).result(timeout=10)

    def left(self) -> list[Any]:
        """Letters nobody acknowledged."""
        from google.cloud import pubsub_v1

        response = pubsub_v1.SubscriberClient().pull(
            subscription=self.subscription, max_messages=10, timeout=5
        )
        return list(response.received_messages)


def _metrics_delay() -> str:
    """The emulator's Monitoring delay under MODELDROP_VERTEX_FIDELITY / _TIME_SCALE / _RULES, as
    it plays it (faithful: a 60 s sample, then 180 s of ingestion scaled)."""
    import argparse
    import os

    from local.vertex.settings import fidelity_from

    none = argparse.Namespace(fidelity=None, time_scale=None, rule=[])
    return f"{fidelity_from(none, os.environ).metrics_delay_s}s"


def make_world(vertex_url: str, **overrides: str) -> World:
    """Fresh buckets and topics on the running emulators; `overrides` are MODELDROP_* settings (lower-case)."""
    from google.api_core.exceptions import Conflict
    from google.cloud import pubsub_v1, storage

    n = next(_ids)
    names = {
        "weights_bucket": f"weights-{n}",
        "state_bucket": f"state-{n}",
        "commands_topic": f"commands-{n}",
        "results_topic": f"results-{n}",
    }
    defaults = {
        # A project per world: the shared Vertex emulator keeps each test's endpoints apart.
        "project": f"{PROJECT}-{n}",
        "serving_image": "us-docker.pkg.dev/modeldrop-test/test/echo:1",
        "vertex_api_endpoint": vertex_url,
        "monitoring_api_endpoint": vertex_url,
        "deploy_grace": "0",
        # As late as the emulator plays Monitoring: its legacy preset counts a prediction at once.
        "metrics_delay": _metrics_delay(),
    }
    env = make_env(**{**defaults, **names, **overrides})
    settings = Settings.from_env(env)
    client = storage.Client(project=PROJECT)
    for bucket in (settings.weights_bucket, settings.state_bucket):
        try:
            client.create_bucket(bucket)
        except Conflict:
            pass
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    subscriptions = []
    for topic in (settings.results_topic, settings.commands_topic):
        topic_path = publisher.topic_path(settings.project, topic)
        publisher.create_topic(name=topic_path)
        subscription = subscriber.subscription_path(settings.project, f"{topic}-test")
        subscriber.create_subscription(name=subscription, topic=topic_path)
        subscriptions.append(subscription)
    return World(settings, build(settings), subscriptions[0], subscriptions[1])


def _env_fields(settings: Settings) -> dict[str, Any]:
    from dataclasses import asdict

    fields = {k: v for k, v in asdict(settings).items() if v is not None}
    renamed = {
        "default_idle_ttl_s": "default_idle_ttl",
        "deploy_grace_s": "deploy_grace",
        "max_event_age_s": "max_event_age",
        "upload_wait_s": "upload_wait",
        "metrics_delay_s": "metrics_delay",
    }
    return {
        renamed.get(k, k): (str(v).lower() if isinstance(v, bool) else v) for k, v in fields.items()
    }


def sound_files(config: dict[str, Any] | None = None) -> dict[str, bytes]:
    """A small version folder that passes validation (the echo image never reads it)."""
    return {
        "config.json": json.dumps(config or CONFIG).encode(),
        "tokenizer.json": b'{"version": "1.0"}',
        "model.safetensors": make_safetensors(),
    }
