"""The CLI's view of the results topic: a short-lived subscription of its own, pulled until the story ends."""

from __future__ import annotations

import json
import sys
import uuid
from functools import cache
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from pydantic import ValidationError

from modeldrop.google_errors import translate
from modeldrop.results import Result

if TYPE_CHECKING:
    from google.cloud.pubsub_v1 import SubscriberClient

# A subscription the CLI forgets to delete (a killed process) disappears by itself after a day.
EXPIRE_AFTER_S = 24 * 3600


def parse_result(data: bytes) -> Result:
    """A published result; `terminal` is computed from the status, so a copy of it in the body is dropped."""
    body = json.loads(data)
    if isinstance(body, dict):
        body.pop("terminal", None)
    return Result.model_validate(body)


class ResultFeed(Protocol):
    def pull(self, wait_s: float) -> list[Result]:
        """Results published since the feed opened, waiting up to `wait_s` for the first."""
        ...


@cache
def _subscriber() -> SubscriberClient:
    from google.cloud.pubsub_v1 import SubscriberClient

    # PUBSUB_EMULATOR_HOST, when set, is read by the client itself.
    return SubscriberClient()


class PubSubResultFeed:
    """A subscription to the results topic, created on enter (before the command is published) and
    deleted on exit; with `request_id`, only that request's results (filtered server side on GCP,
    and here again, since the emulator ignores filters)."""

    def __init__(self, project: str, results_topic: str, request_id: str | None = None) -> None:
        self.topic = f"projects/{project}/topics/{results_topic}"
        self.subscription = (
            f"projects/{project}/subscriptions/modeldrop-cli-{uuid.uuid4().hex[:12]}"
        )
        self.request_id = request_id

    def __enter__(self) -> PubSubResultFeed:
        request: dict[str, object] = {
            "name": self.subscription,
            "topic": self.topic,
            "ack_deadline_seconds": 30,
            "expiration_policy": {"ttl": {"seconds": EXPIRE_AFTER_S}},
        }
        if self.request_id:
            request["filter"] = f'attributes.request_id = "{self.request_id}"'
        try:
            _subscriber().create_subscription(request=request)
        except Exception as error:
            raise translate(error, f"subscribing to {self.topic}") from error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            _subscriber().delete_subscription(subscription=self.subscription, timeout=10)
        except Exception as error:  # noqa: BLE001 - it expires by itself; say so and move on
            sys.stderr.write(f"note: could not delete {self.subscription}: {error}\n")

    def pull(self, wait_s: float) -> list[Result]:
        from google.api_core.exceptions import DeadlineExceeded, RetryError

        try:
            response = _subscriber().pull(
                subscription=self.subscription, max_messages=100, timeout=wait_s
            )
        except (DeadlineExceeded, RetryError):
            return []
        except Exception as error:
            raise translate(error, f"pulling {self.subscription}") from error
        if response.received_messages:
            _subscriber().acknowledge(
                subscription=self.subscription,
                ack_ids=[m.ack_id for m in response.received_messages],
            )
        results = []
        for received in response.received_messages:
            try:
                result = parse_result(received.message.data)
            except (ValidationError, ValueError):
                sys.stderr.write(
                    f"note: skipped a message that is not a result: {received.message.message_id}\n"
                )
                continue
            if self.request_id is None or result.request_id == self.request_id:
                results.append(result)
        return sorted(results, key=lambda r: r.at)
