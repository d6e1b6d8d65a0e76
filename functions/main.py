"""Cloud Functions entry points: parse the event, call the logic, let the result reach its topic.

Errors carry retry semantics: a PermanentError is logged and the event acknowledged (its failed
result is already published where it has a request_id); a TransientError (or anything unexpected)
propagates, so the platform redelivers and the dead-letter topic catches what never succeeds.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import functions_framework

from modeldrop import events, logs
from modeldrop.context import context
from modeldrop.errors import PermanentError
from modeldrop.executor import on_message
from modeldrop.sweeper import sweep as run_sweep
from modeldrop.uploads import on_object

log = logging.getLogger("modeldrop")
logs.configure()


@functions_framework.cloud_event
def on_upload(event: Any) -> None:
    """A finalized object under models/<model>/<version>/: register the folder once complete."""
    try:
        result = on_object(events.storage_object(event), context(), datetime.now(UTC))
    except PermanentError as error:
        log.error(
            "upload event not handled: %s",
            "; ".join(error.reasons),
            extra={"event_id": event.get("id")},
        )
        return
    _log(result)


@functions_framework.cloud_event
def on_command(event: Any) -> None:
    """A message on the commands topic: start what it asks, publish its result."""
    try:
        result = on_message(events.pubsub_message(event), context(), datetime.now(UTC))
    except PermanentError as error:
        log.error(
            "command event not handled: %s",
            "; ".join(error.reasons),
            extra={"event_id": event.get("id")},
        )
        return
    _log(result)


@functions_framework.cloud_event
def sweep(event: Any) -> None:
    """A scheduler tick: follow operations, tear down idle deployments, repair drift."""
    summary = run_sweep(context(), datetime.now(UTC))
    log.info("sweep: %s", summary)


def _log(result: Any) -> None:
    if result is None:
        log.info("nothing to report (incomplete upload or duplicate event)")
    else:
        log.info(
            "%s %s: %s %s",
            result.action,
            result.request_id,
            result.status,
            result.message,
            extra={"request_id": result.request_id, "status": str(result.status)},
        )
