"""The serving container's activity records, written by the echo server: a stand-in deployment that
signals its traffic the way `python -m serving` does (serving.activity), so the sweep judges it alike."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from serving.activity import Activity


class EchoActivity:
    """Counts the echo server's requests from its handler threads; serving.activity writes them."""

    def __init__(self, activity: Activity) -> None:
        self.activity = activity
        # serving.activity runs on an event loop (its writer is a task); the echo server's handlers
        # are threads, so every count is handed to that loop rather than touched across threads.
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="activity", daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EchoActivity | None:
        """Records only where the container would write them: a state bucket and Vertex's ids."""
        bucket = env.get("MODELDROP_STATE_BUCKET", "").strip()
        endpoint, deployed = env.get("AIP_ENDPOINT_ID"), env.get("AIP_DEPLOYED_MODEL_ID")
        if not (bucket and endpoint and deployed):
            return None
        period = float(env.get("MODELDROP_ACTIVITY_PERIOD", "").strip() or 30.0)
        replica = env.get("MODELDROP_REPLICA_ID", "").strip() or f"echo-{os.getpid()}"
        return cls(Activity.for_replica(bucket, endpoint, deployed, replica, period))

    async def _start(self) -> None:
        self.activity.start()

    @contextmanager
    def request(self) -> Iterator[None]:
        self.loop.call_soon_threadsafe(self.activity.begin)
        try:
            yield
        finally:
            self.loop.call_soon_threadsafe(self.activity.end)
