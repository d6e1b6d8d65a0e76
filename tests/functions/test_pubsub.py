"""The Pub/Sub adapter over the wire: results arrive with their attributes; failures are retryable."""

from __future__ import annotations

import json

import pytest
from support.names import PROJECT

from modeldrop.errors import TransientError
from modeldrop.pubsub import PubSubPublisher
from modeldrop.results import Result, Status

pytestmark = pytest.mark.stack


def test_results_and_commands_arrive_with_filterable_attributes(pubsub_host: str) -> None:
    """A published result carries request_id, status, terminal and kind as attributes; a command its action."""
    from google.cloud import pubsub_v1

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    subscriptions = {}
    for topic in ("adapter-results", "adapter-commands"):
        publisher.create_topic(name=publisher.topic_path(PROJECT, topic))
        subscriptions[topic] = subscriber.subscription_path(PROJECT, f"{topic}-sub")
        subscriber.create_subscription(
            name=subscriptions[topic], topic=publisher.topic_path(PROJECT, topic)
        )
    adapter = PubSubPublisher(PROJECT, "adapter-results", "adapter-commands")
    adapter.publish_result(
        Result(request_id="r-1", kind="command", action="deploy", status=Status.READY)
    )
    adapter.publish_command({"action": "deploy", "request_id": "c-1", "model": "m"})
    [result] = subscriber.pull(
        subscription=subscriptions["adapter-results"], max_messages=10, timeout=10
    ).received_messages
    assert dict(result.message.attributes) == {
        "request_id": "r-1",
        "status": "ready",
        "terminal": "true",
        "kind": "command",
    }
    assert Result.model_validate_json(result.message.data).status is Status.READY
    [command] = subscriber.pull(
        subscription=subscriptions["adapter-commands"], max_messages=10, timeout=10
    ).received_messages
    assert (
        json.loads(command.message.data)["request_id"] == "c-1"
        and command.message.attributes["action"] == "deploy"
    )


def test_publishing_failures_are_transient(pubsub_host: str) -> None:
    """A missing topic or an unreachable server raises TransientError, so the event is retried, not lost."""
    result = Result(request_id="r-2", kind="command", action="deploy", status=Status.FAILED)
    with pytest.raises(TransientError, match="404"):
        PubSubPublisher(PROJECT, "no-such-topic", "x-commands").publish_result(result)
    with pytest.raises(TransientError):
        PubSubPublisher(
            PROJECT, "t-results", "t-commands", api_endpoint="http://127.0.0.1:9"
        ).publish_result(result)
