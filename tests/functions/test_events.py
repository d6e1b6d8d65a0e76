"""CloudEvents parse once into typed values; events that aren't ours are permanent errors."""

from __future__ import annotations

import base64

import pytest
from cloudevents.http import CloudEvent

from modeldrop.errors import PermanentError
from modeldrop.events import PUBSUB_PUBLISHED, STORAGE_FINALIZED, pubsub_message, storage_object


def test_a_storage_event_names_bucket_object_and_generation() -> None:
    """The finalized object's bucket, name and generation (a string in the JSON API) become typed fields."""
    event = CloudEvent(
        {"type": STORAGE_FINALIZED, "source": "//storage.googleapis.com/projects/_/buckets/w"},
        {"bucket": "w", "name": "models/m/v1/config.json", "generation": "17", "size": "300"},
    )
    obj = storage_object(event)
    assert (obj.bucket, obj.name, obj.generation, obj.size) == (
        "w",
        "models/m/v1/config.json",
        17,
        300,
    )
    assert obj.event_time is not None


def test_a_pubsub_event_decodes_its_message() -> None:
    """The base64 data, attributes, message id and publish time come out of the envelope."""
    data = {
        "message": {
            "data": base64.b64encode(b'{"a": 1}').decode(),
            "attributes": {"k": "v"},
            "messageId": "42",
            "publishTime": "2026-01-01T00:00:00Z",
        }
    }
    message = pubsub_message(CloudEvent({"type": PUBSUB_PUBLISHED, "source": "//pubsub"}, data))
    assert (message.data, message.attributes, message.message_id) == (b'{"a": 1}', {"k": "v"}, "42")
    assert message.publish_time is not None and message.publish_time.year == 2026


@pytest.mark.parametrize("data", [{}, {"message": "x"}, {"message": {"data": "***"}}])
def test_malformed_pubsub_events_are_permanent(data: dict[str, object]) -> None:
    """An envelope without a decodable message is a permanent error (acknowledged, not retried)."""
    with pytest.raises(PermanentError):
        pubsub_message(CloudEvent({"type": PUBSUB_PUBLISHED, "source": "//pubsub"}, data))


def test_a_storage_event_without_an_object_is_permanent() -> None:
    """A storage event whose data lacks bucket or name is a permanent error."""
    with pytest.raises(PermanentError):
        storage_object(
            CloudEvent({"type": STORAGE_FINALIZED, "source": "//storage"}, {"generation": "x"})
        )
