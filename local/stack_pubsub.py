"""Topics and subscriptions of the local stack, created in the Pub/Sub emulator the way terraform creates them on GCP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from local.stack_state import (
    COMMANDS_TOPIC,
    DEAD_LETTER_TOPIC,
    GCS_EVENTS_TOPIC,
    RESULTS_TOPIC,
    SWEEP_TOPIC,
)

TOPICS = (GCS_EVENTS_TOPIC, COMMANDS_TOPIC, RESULTS_TOPIC, SWEEP_TOPIC, DEAD_LETTER_TOPIC)
# Pub/Sub's minimum; after that many failed pushes a message goes to the dead-letter topic.
MAX_DELIVERY_ATTEMPTS = 5


@dataclass(frozen=True)
class Push:
    """A push subscription: messages on `topic` are POSTed to `endpoint`.

    Locally it is a pull subscription that local.relay delivers from, with Pub/Sub's documented
    retry policy and dead-letter policy (the emulator's own push retries are not Pub/Sub's)."""

    name: str
    topic: str
    endpoint: str
    # A push waits this long for the function's answer before Pub/Sub counts it as failed.
    ack_deadline_s: int = 300
    min_backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def route(self, admin: PubSubAdmin) -> str:
        """This push as a `python -m local.relay --route` value."""
        return (
            f"{admin.subscription_path(self.name)}={self.endpoint}"
            f",dead_letter={admin.topic_path(DEAD_LETTER_TOPIC)},attempts={MAX_DELIVERY_ATTEMPTS}"
            f",min={self.min_backoff_s:g},max={self.max_backoff_s:g},deadline={self.ack_deadline_s}"
        )


class PubSubAdmin:
    """Creates topics and subscriptions in the emulator at `host`, ignoring ones that exist."""

    def __init__(self, host: str, project: str) -> None:
        import grpc  # type: ignore[import-untyped]
        from google.cloud import pubsub_v1
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        # Explicit insecure channels: no credentials and no dependence on this process's env.
        self._publisher = pubsub_v1.PublisherClient(
            transport=PublisherGrpcTransport(channel=grpc.insecure_channel(host))
        )
        self._subscriber = pubsub_v1.SubscriberClient(
            transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host))
        )
        self.project = project

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, name: str) -> str:
        return f"projects/{self.project}/subscriptions/{name}"

    def create_topics(self, topics: tuple[str, ...] = TOPICS) -> None:
        from google.api_core.exceptions import AlreadyExists

        for topic in topics:
            try:
                self._publisher.create_topic(name=self.topic_path(topic))
            except AlreadyExists:
                pass

    def create_pull(self, name: str, topic: str) -> None:
        self._create({"name": self.subscription_path(name), "topic": self.topic_path(topic)})

    def create_push(self, push: Push) -> None:
        """The pull subscription local.relay delivers `push` from (the relay holds the deadline)."""
        self._create(
            {
                "name": self.subscription_path(push.name),
                "topic": self.topic_path(push.topic),
                "ack_deadline_seconds": 600,
            }
        )

    def _create(self, request: dict[str, Any]) -> None:
        from google.api_core.exceptions import AlreadyExists

        try:
            self._subscriber.create_subscription(request=request)
        except AlreadyExists:
            # A restarted stack: the emulator may have kept it (an old push config included).
            self._subscriber.modify_push_config(
                subscription=request["name"], push_config=request.get("push_config", {})
            )

    def close(self) -> None:
        self._publisher.transport.close()
        self._subscriber.close()
