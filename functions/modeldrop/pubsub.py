"""The Pub/Sub adapter: publish results (with their filterable attributes) and commands."""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from modeldrop.google_errors import translate
from modeldrop.results import Result

if TYPE_CHECKING:
    import google.cloud.pubsub_v1 as pubsub_v1

PUBLISH_TIMEOUT_S = 30.0


class Publisher(Protocol):
    def publish_result(self, result: Result) -> None: ...

    def publish_command(self, command: dict[str, Any]) -> None: ...


@cache
def _client() -> pubsub_v1.PublisherClient:
    import google.cloud.pubsub_v1 as pubsub_v1

    # PUBSUB_EMULATOR_HOST, when set, is read by the client itself.
    return pubsub_v1.PublisherClient()


class PubSubPublisher:
    """Publisher over google-cloud-pubsub; waits for each message id so a failure is raised here."""

    def __init__(self, project: str, results_topic: str, commands_topic: str) -> None:
        self._results = f"projects/{project}/topics/{results_topic}"
        self._commands = f"projects/{project}/topics/{commands_topic}"

    def publish_result(self, result: Result) -> None:
        self._publish(self._results, result.model_dump_json().encode(), result.attributes())

    def publish_command(self, command: dict[str, Any]) -> None:
        attributes = {
            "action": str(command.get("action", "")),
            "request_id": str(command.get("request_id", "")),
        }
        self._publish(self._commands, json.dumps(command).encode(), attributes)

    def _publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> None:
        try:
            _client().publish(topic, data, **attributes).result(timeout=PUBLISH_TIMEOUT_S)
        except Exception as error:
            raise translate(error, f"publishing to {topic}") from error
