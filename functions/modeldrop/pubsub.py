"""The Pub/Sub adapter: publish results (with their filterable attributes) and commands.

It speaks Pub/Sub's REST API (`topics.publish`) through the same HTTP stack as the storage client:
the gRPC client library costs ~0.3-0.6 s of import on a cold start, for one small message.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from modeldrop.config import pubsub_api_endpoint
from modeldrop.errors import TransientError
from modeldrop.results import Result

if TYPE_CHECKING:
    import requests

PUBLISH_TIMEOUT_S = 30.0
SCOPE = "https://www.googleapis.com/auth/pubsub"


class Publisher(Protocol):
    def publish_result(self, result: Result) -> None: ...

    def publish_command(self, command: dict[str, Any]) -> None: ...


@cache
def _session(api_endpoint: str) -> requests.Session:
    import requests

    if api_endpoint.startswith("http://"):
        return requests.Session()  # the local emulator: no Google credentials needed
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=[SCOPE])  # type: ignore[no-untyped-call]
    return AuthorizedSession(credentials)  # type: ignore[no-untyped-call]


class PubSubPublisher:
    """Publisher over Pub/Sub's REST API; returns once the message has an id, raises otherwise."""

    def __init__(
        self,
        project: str,
        results_topic: str,
        commands_topic: str,
        api_endpoint: str | None = None,
    ) -> None:
        self._results = f"projects/{project}/topics/{results_topic}"
        self._commands = f"projects/{project}/topics/{commands_topic}"
        self._api_endpoint = (api_endpoint or pubsub_api_endpoint()).rstrip("/")

    def publish_result(self, result: Result) -> None:
        self._publish(self._results, result.model_dump_json().encode(), result.attributes())

    def publish_command(self, command: dict[str, Any]) -> None:
        attributes = {
            "action": str(command.get("action", "")),
            "request_id": str(command.get("request_id", "")),
        }
        self._publish(self._commands, json.dumps(command).encode(), attributes)

    def _publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> None:
        # Every failure here is transient on purpose: a result that can't be published must make the
        # event retry (and reach the dead-letter topic), never be acknowledged and lost.
        message: dict[str, Any] = {
            "data": base64.b64encode(data).decode(),
            "attributes": attributes,
        }
        url = f"{self._api_endpoint}/v1/{topic}:publish"
        try:
            response = _session(self._api_endpoint).post(
                url, json={"messages": [message]}, timeout=PUBLISH_TIMEOUT_S
            )
        except Exception as error:
            raise TransientError(f"publishing to {topic}: {error}") from error
        if response.status_code != 200:
            raise TransientError(
                f"publishing to {topic}: HTTP {response.status_code} {response.text[:300]}"
            )


@dataclass(frozen=True)
class DeadLetter:
    """A message Pub/Sub gave up delivering, as pulled from a dead-letter subscription."""

    ack_id: str
    message_id: str
    data: bytes
    attributes: dict[str, str]


class DeadLetters(Protocol):
    def pull(self, max_messages: int) -> list[DeadLetter]: ...

    def ack(self, ack_ids: list[str]) -> None: ...


class PubSubDeadLetters:
    """A dead-letter subscription over Pub/Sub's REST API (synchronous pull, then acknowledge)."""

    def __init__(self, project: str, subscription: str, api_endpoint: str | None = None) -> None:
        self._subscription = f"projects/{project}/subscriptions/{subscription}"
        self._api_endpoint = (api_endpoint or pubsub_api_endpoint()).rstrip("/")

    def pull(self, max_messages: int) -> list[DeadLetter]:
        # returnImmediately: Pub/Sub's PullRequest reference calls it deprecated and warns it may
        # answer empty while messages wait; without it a pull may hold for a bounded time until one
        # arrives, which would stall every sweep. An empty answer only delays a dead letter to the
        # next tick (nothing is acknowledged that was not answered), so the sweep keeps it.
        body = self._call("pull", {"maxMessages": max_messages, "returnImmediately": True})
        letters = []
        for received in body.get("receivedMessages", []):
            message = received.get("message", {})
            letters.append(
                DeadLetter(
                    ack_id=str(received["ackId"]),
                    message_id=str(message.get("messageId", "")),
                    data=base64.b64decode(message.get("data", "")),
                    attributes={str(k): str(v) for k, v in message.get("attributes", {}).items()},
                )
            )
        return letters

    def ack(self, ack_ids: list[str]) -> None:
        if ack_ids:
            self._call("acknowledge", {"ackIds": ack_ids})

    def _call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        url = f"{self._api_endpoint}/v1/{self._subscription}:{method}"
        try:
            response = _session(self._api_endpoint).post(
                url, json=payload, timeout=PUBLISH_TIMEOUT_S
            )
        except Exception as error:
            raise TransientError(f"{method} on {self._subscription}: {error}") from error
        if response.status_code != 200:
            raise TransientError(
                f"{method} on {self._subscription}: HTTP {response.status_code} {response.text[:300]}"
            )
        found: dict[str, Any] = response.json() if response.content else {}
        return found
