"""What the gateway observes of an endpoint (Vertex, the teardown record, this sleep's wake), cached
per process, and the wake notes it writes (`wakes/<endpoint>.json`).

Every held request looks at its endpoint again and again: the observation is shared by all of them
(one fetch at a time per endpoint, kept `poll_s`), so 200 held requests cost one look per poll. A
ready endpoint's observation is served stale while one background fetch refreshes it: the proxied
path reads no bucket and calls no Vertex API beyond the prediction itself: a dedicated endpoint's
DNS rides in the observation.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, ValidationError

from modeldrop import labels
from modeldrop.context import Context
from modeldrop.gateway_rules import DeployNote, Observation, Serving, WakeNote
from modeldrop.labels import MODEL
from modeldrop.records import RequestState

log = logging.getLogger(__name__)
WAKES = "wakes/"
# A ready endpoint is looked at again in the background this often (a teardown shows within it;
# a request that races one is answered by Vertex, and the next look sees the sleep).
READY_REFRESH_S = 5.0


class _Note(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: str
    published_at: datetime


def read_note(ctx: Context, endpoint: str) -> WakeNote | None:
    """The wake a gateway published for `endpoint`'s latest sleep, with its outcome once decided."""
    current = ctx.storage.read(ctx.settings.state_bucket, f"{WAKES}{endpoint}.json")
    if current is None:
        return None
    try:
        note = _Note.model_validate_json(current.data)
    except ValidationError:
        log.warning(
            "gs://%s/%s%s.json is not a wake note", ctx.settings.state_bucket, WAKES, endpoint
        )
        return None
    record = ctx.state.request(note.request_id)
    outcome, message = None, ""
    if record is not None and record.state is RequestState.DONE:
        outcome = record.status or (record.result.status.value if record.result else "done")
        if record.result is not None:
            message = "; ".join([record.result.message, *record.result.reasons]).strip("; ")
    return WakeNote(note.request_id, note.published_at, outcome, message)


def write_note(ctx: Context, endpoint: str, request_id: str, now: datetime) -> None:
    body = {"request_id": request_id, "published_at": now.isoformat(), "endpoint": endpoint}
    ctx.storage.write(
        ctx.settings.state_bucket, f"{WAKES}{endpoint}.json", json.dumps(body).encode()
    )


def observe(ctx: Context, endpoint: str) -> Observation:
    """A fresh look: Vertex first; the bucket only when the endpoint serves nothing."""
    found = ctx.vertex.endpoint(endpoint)
    label = None
    if found is not None:
        label = found.labels.get(MODEL)
        ttl = labels.idle_ttl_seconds(found.labels, ctx.settings.default_idle_ttl_s)
        models = {d.id: d.model for d in found.deployments}
        serving: tuple[Serving, ...] = tuple(
            Serving(dm_id, models[dm_id], percent)
            for dm_id, percent in sorted(found.traffic_split.items())
            if percent > 0 and dm_id in models
        )
        if serving:
            return Observation(
                endpoint,
                True,
                serving,
                label,
                idle_ttl_s=ttl,
                dedicated=found.dedicated,
                dedicated_dns=found.dedicated_dns,
            )
    teardown = ctx.state.teardown(endpoint)
    return Observation(
        endpoint,
        found is not None,
        (),
        label,
        teardown.at if teardown is not None else None,
        read_note(ctx, endpoint),
        read_deploy(ctx, endpoint),
    )


def read_deploy(ctx: Context, endpoint: str) -> DeployNote | None:
    """The latest deploy or wake anyone started or queued on `endpoint` (state.DeployNote)."""
    note = ctx.state.deploy_note(endpoint)
    if note is None:
        return None
    return DeployNote(note.request_id, note.action, note.at, note.status, note.message)


@dataclass
class _Entry:
    seen: Observation
    at: float
    refreshing: bool = False


class Observer:
    """Observations per endpoint, shared by the process's requests."""

    def __init__(
        self,
        look: Callable[[str], Observation],
        poll_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._look = look
        self._poll_s = poll_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, endpoint: str) -> Observation:
        """The endpoint as last seen, no older than `poll_s` unless it is ready (then refreshed
        in the background after READY_REFRESH_S). Ready means routable: a dedicated endpoint
        whose DNS is not published yet is looked at again like one that is not serving."""
        entry = self._entries.get(endpoint)
        now = self._clock()
        if entry is not None:
            age = now - entry.at
            if entry.seen.routable:
                if age > READY_REFRESH_S and not entry.refreshing:
                    entry.refreshing = True
                    threading.Thread(
                        target=self._refresh, args=(endpoint,), daemon=True, name="observe"
                    ).start()
                return entry.seen
            if age < self._poll_s:
                return entry.seen
        return self._fetch(endpoint, entry)

    def fresh(self, endpoint: str) -> Observation:
        """A new look now (Vertex refused a request the last look said it would serve)."""
        self.forget(endpoint)
        return self._fetch(endpoint, None)

    def forget(self, endpoint: str) -> None:
        """The next `get` looks again (after this process published a wake, or Vertex refused)."""
        self._entries.pop(endpoint, None)

    def _lock(self, endpoint: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(endpoint, threading.Lock())

    def _fetch(self, endpoint: str, seen_before: _Entry | None) -> Observation:
        with self._lock(endpoint):
            # Single flight: whoever waited on the lock takes what the holder fetched.
            entry = self._entries.get(endpoint)
            if entry is not None and entry is not seen_before:
                return entry.seen
            seen = self._look(endpoint)
            self._entries[endpoint] = _Entry(seen, self._clock())
            return seen

    def _refresh(self, endpoint: str) -> None:
        try:
            seen = self._look(endpoint)
        except Exception as error:  # the stale look stays; the next request tries again
            log.warning("looking at endpoint %s again failed: %s", endpoint, error)
            entry = self._entries.get(endpoint)
            if entry is not None:
                entry.refreshing = False
            return
        self._entries[endpoint] = _Entry(seen, self._clock())
