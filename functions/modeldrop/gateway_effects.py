"""The gateway's side effects: this sleep's wake published once per process, and activity records
written at most once per endpoint per period, off the request's path."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from modeldrop import activity, gateway_state
from modeldrop.context import Context
from modeldrop.errors import ModeldropError
from modeldrop.gateway_rules import Observation, activity_period_s

log = logging.getLogger(__name__)


class Effects:
    """What the process's requests do to the world beside proxying, shared by all of them."""

    def __init__(
        self, ctx: Context, observer: gateway_state.Observer, clock: Callable[[], float]
    ) -> None:
        self.ctx = ctx
        self._observer = observer
        self._clock = clock
        self._published: set[str] = set()
        self._wake_lock = threading.Lock()
        self._touched: dict[str, float] = {}
        self._touch_lock = threading.Lock()

    def wake(self, endpoint: str, request_id: str) -> None:
        """Publish this sleep's wake, once per process (other instances publish the same request
        id, which the control plane runs once); the wake note tells later looks it is under way."""
        with self._wake_lock:
            if request_id in self._published:
                return
            now = datetime.now(UTC)
            command = {
                "action": "wake",
                "request_id": request_id,
                "endpoint": endpoint,
                "issued_at": now.isoformat(),
            }
            try:
                self.ctx.publisher.publish_command(command)
                gateway_state.write_note(self.ctx, endpoint, request_id, now)
            except ModeldropError as error:
                log.warning("waking %s: %s (tried again at the next look)", endpoint, error)
                return
            self._published.add(request_id)
            self._observer.forget(endpoint)
            log.info("waking %s: published wake %s", endpoint, request_id)

    def touch(self, endpoint: str, seen: Observation) -> None:
        """Count the request as activity: at most one write per endpoint per period, off the
        request's path."""
        now = self._clock()
        period = activity_period_s(self.ctx.settings.gateway_activity_period_s, seen.idle_ttl_s)
        with self._touch_lock:
            last = self._touched.get(endpoint)
            if last is not None and now - last < period:
                return
            self._touched[endpoint] = now
        at = datetime.now(UTC)
        threading.Thread(
            target=self._write_activity, args=(endpoint, seen, at), daemon=True
        ).start()

    def _write_activity(self, endpoint: str, seen: Observation, at: datetime) -> None:
        for serving in seen.serving:
            try:
                activity.write_gateway(
                    self.ctx.storage,
                    self.ctx.settings.state_bucket,
                    endpoint,
                    serving.deployed_model_id,
                    at,
                )
            except Exception as error:  # a record is a signal, never a reason to fail a request
                log.warning("activity record for %s not written: %s", endpoint, error)
