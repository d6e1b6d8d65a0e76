"""CloudEvents as the functions receive them, parsed once into typed values."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modeldrop.errors import PermanentError

STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


class CloudEventLike(Protocol):
    """What we read from functions-framework's CloudEvent (cloudevents.http.CloudEvent)."""

    data: Any

    def __getitem__(self, key: str) -> Any: ...

    def get(self, key: str, default: Any = None) -> Any: ...


class StorageObject(BaseModel):
    """A finalized object, from the event's data (the object's JSON API resource)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    bucket: str
    name: str
    generation: int
    size: int = 0
    event_id: str = ""
    event_time: datetime | None = None


class PubSubMessage(BaseModel):
    """A Pub/Sub message from a messagePublished event, its data decoded."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    data: bytes
    attributes: dict[str, str] = Field(default_factory=dict)
    message_id: str = ""
    publish_time: datetime | None = None


def storage_object(event: CloudEventLike) -> StorageObject:
    """The object a storage event names; PermanentError when the event isn't one."""
    data = event.data if isinstance(event.data, dict) else {}
    try:
        return StorageObject(
            bucket=data.get("bucket", ""),
            name=data.get("name", ""),
            generation=data.get("generation", 0),
            size=data.get("size", 0) or 0,
            event_id=str(event.get("id") or ""),
            event_time=_time(event.get("time")),
        )
    except ValidationError as error:
        raise PermanentError(f"not a storage object event: {error.errors()[0]['msg']}") from error


def pubsub_message(event: CloudEventLike) -> PubSubMessage:
    """The message inside a messagePublished event; PermanentError when it carries none."""
    data = event.data if isinstance(event.data, dict) else {}
    message = data.get("message")
    if not isinstance(message, dict):
        raise PermanentError("not a Pub/Sub event: its data has no 'message'")
    try:
        body = base64.b64decode(message.get("data") or b"", validate=True)
    except (binascii.Error, ValueError) as error:
        raise PermanentError(f"the message data is not base64: {error}") from error
    return PubSubMessage(
        data=body,
        attributes=message.get("attributes") or {},
        message_id=str(
            message.get("messageId") or message.get("message_id") or event.get("id") or ""
        ),
        publish_time=_time(
            message.get("publishTime") or message.get("publish_time") or event.get("time")
        ),
    )


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None
