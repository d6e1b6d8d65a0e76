"""Each endpoint's queue of commands that arrived while it was busy, as objects in the state bucket.

`queue/<endpoint>/<arrived>-<request_id>.json`, one object per command: names sort by arrival, so
one listing gives the order. An entry is written once (`ifGenerationMatch: 0`) under a name made
from the request's first claim, so a redelivered command finds its entry already there. Only a
holder of the endpoint's lease adds, supersedes or starts entries: one writer per queue at a time.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from modeldrop.errors import ConflictError
from modeldrop.storage import Storage

log = logging.getLogger(__name__)
PREFIX = "queue/"


class QueueEntry(BaseModel):
    """A command waiting for its endpoint, as the JSON that parses back into it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: str
    endpoint: str
    action: str
    arrived_at: datetime
    command: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{PREFIX}{self.endpoint}/{self.arrived_at:%Y%m%dT%H%M%S.%f}-{self.request_id}.json"


class CommandQueue:
    def __init__(self, storage: Storage, bucket: str) -> None:
        self._storage = storage
        self._bucket = bucket

    def add(self, entry: QueueEntry) -> None:
        """Queue `entry`; an entry already there (a redelivery's) is left as it is."""
        try:
            body = entry.model_dump_json().encode()
            self._storage.write(self._bucket, entry.key, body, if_generation_match=0)
        except ConflictError:
            pass

    def entries(self, endpoint: str) -> list[QueueEntry]:
        """The endpoint's queue, oldest first."""
        found = []
        for obj in sorted(
            self._storage.list_objects(self._bucket, f"{PREFIX}{endpoint}/"), key=lambda o: o.name
        ):
            current = self._storage.read(self._bucket, obj.name)
            if current is None:
                continue  # started and removed since the listing
            try:
                found.append(QueueEntry.model_validate_json(current.data))
            except ValidationError:
                # Not written by modeldrop (or torn): it can't be started, and must not block the rest.
                log.error("gs://%s/%s is not a queue entry; skipped", self._bucket, obj.name)
        return found

    def endpoints(self) -> list[str]:
        """Endpoints with at least one queued command, from one listing."""
        names = {
            obj.name.removeprefix(PREFIX).partition("/")[0]
            for obj in self._storage.list_objects(self._bucket, PREFIX)
        }
        return sorted(name for name in names if name)

    def remove(self, entry: QueueEntry) -> None:
        self._storage.delete(self._bucket, entry.key)
