"""Activity records (CONTRACTS.md): this replica's last request and in-flight count, written to the state bucket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from serving.settings import Settings
from serving.state_store import Store, store_for

logger = logging.getLogger(__name__)
MIN_GAP_S = 1.0  # transitions write at once, but at most once a second


def rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Activity:
    """Counts requests as they begin and end; a background task writes the record when the contract says."""

    def __init__(self, store: Store | None, name: str, identity: dict[str, str], period_s: float):
        self.store = store
        self.name = name
        self.identity = identity
        self.period_s = period_s
        self.in_flight = 0
        self.requests = 0
        self.last_request_at: float | None = None
        self.started_at = time.time()
        self._dirty = False  # activity since the last write
        self._urgent = False  # in_flight crossed zero since the last write
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Activity:
        vertex = settings.vertex
        return cls.for_replica(
            settings.state_bucket,
            vertex.endpoint_id,
            vertex.deployed_model_id,
            settings.replica,
            settings.activity_period_s,
        )

    @classmethod
    def for_replica(
        cls,
        state_bucket: str | None,
        endpoint_id: str | None,
        deployed_model_id: str | None,
        replica: str,
        period_s: float,
    ) -> Activity:
        """The record of one replica of one deployment; no store (nothing written) without a bucket."""
        endpoint = endpoint_id or "none"
        deployed = deployed_model_id or "none"
        store = store_for(state_bucket) if state_bucket else None
        identity = {"endpoint_id": endpoint, "deployed_model_id": deployed, "replica": replica}
        name = f"activity/{endpoint}/{deployed}/{replica}.json"
        return cls(store, name, identity, period_s)

    def begin(self) -> None:
        self.requests += 1
        self.in_flight += 1
        self.last_request_at = time.time()
        self._touch(self.in_flight == 1)

    def end(self) -> None:
        self.in_flight -= 1
        self.last_request_at = time.time()
        self._touch(self.in_flight == 0)

    def _touch(self, crossed_zero: bool) -> None:
        self._dirty = True
        if crossed_zero:
            self._urgent = True
            if self._wake is not None:
                self._wake.set()

    def record(self, now: float) -> dict[str, Any]:
        last = self.last_request_at
        return {
            **self.identity,
            "last_request_at": rfc3339(last) if last is not None else None,
            "in_flight": self.in_flight,
            "requests": self.requests,
            "started_at": rfc3339(self.started_at),
            "written_at": rfc3339(now),
        }

    def start(self) -> None:
        """Called once the replica is ready: the first record goes out at once."""
        if self.store is None or self._task is not None:
            return
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="activity-records")

    async def stop(self) -> None:
        """Write a last record (in_flight as it stands) and stop the writer."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        await self._write()

    async def _run(self) -> None:
        assert self._wake is not None
        await self._write()
        last = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.period_s)
            self._wake.clear()
            gap = time.monotonic() - last
            if self._urgent and gap < MIN_GAP_S:
                await asyncio.sleep(MIN_GAP_S - gap)
            elif not self._urgent and not (self._dirty and gap >= self.period_s):
                continue
            await self._write()
            last = time.monotonic()

    async def _write(self) -> None:
        if self.store is None:
            return
        self._dirty = self._urgent = False
        data = json.dumps(self.record(time.time())).encode()
        try:
            await asyncio.to_thread(self.store.write, self.name, data)
        except Exception as error:  # a record is a signal, never a reason to fail a request
            logger.warning(
                "activity record not written", extra={"object": self.name, "error": str(error)}
            )
