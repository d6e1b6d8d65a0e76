"""Cloud Functions entry points: parse the event, call the logic, let the result reach its topic.

Errors carry retry semantics: a PermanentError is logged and the event acknowledged (its failed
result is already published where it has a request_id); a TransientError is an expected retry: one
WARNING line, then a 503 so the platform redelivers (no traceback: nothing for a person to fix);
anything unexpected propagates with its traceback at ERROR, and the dead-letter topic catches what
never succeeds.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import functions_framework
from flask import Request, Response
from werkzeug.exceptions import ServiceUnavailable

from modeldrop import events, logs
from modeldrop.context import context
from modeldrop.errors import PermanentError, TransientError
from modeldrop.executor import on_message
from modeldrop.gateway import front_door
from modeldrop.layout import WeightsObject, classify
from modeldrop.sweeper import sweep as run_sweep
from modeldrop.uploads import on_object

log = logging.getLogger("modeldrop")
logs.configure()


@functions_framework.cloud_event
def on_upload(event: Any) -> None:
    """A finalized object under models/<model>/<version>/: register the folder once complete."""
    now = datetime.now(UTC)
    obj = None
    try:
        obj = events.storage_object(event)
        result = on_object(obj, context(), now)
    except PermanentError as error:
        log.error(
            "upload event not handled: %s",
            "; ".join(error.reasons),
            extra={"event_id": event.get("id")},
        )
        return
    except TransientError as error:
        _retry("upload", event, error)
    except Exception:
        # A fault in modeldrop itself: Eventarc would retry it for a day, repeating the fault.
        # Logged for a person; the folder is left to the sweep, which judges it again each tick.
        log.exception("upload event failed unexpectedly", extra={"event_id": event.get("id")})
        _leave_to_sweep(obj, now)
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
    except TransientError as error:
        _retry("command", event, error)
    _log(result)


@functions_framework.cloud_event
def sweep(event: Any) -> None:
    """A scheduler tick: follow operations, tear down idle deployments, repair drift."""
    summary = run_sweep(context(), datetime.now(UTC))
    log.info("sweep: %s", summary)


@functions_framework.http
def gateway(request: Request) -> Response:
    """The front door: route a request to its endpoint by name, waking it first if it sleeps."""
    return front_door().handle(request)


def _retry(what: str, event: Any, error: TransientError) -> None:
    log.warning("%s event redelivered later: %s", what, error, extra={"event_id": event.get("id")})
    raise ServiceUnavailable(f"retry later: {error}")


def _leave_to_sweep(obj: Any, now: datetime) -> None:
    if obj is None:
        return
    try:
        path = classify(obj.bucket, obj.name)
        if isinstance(path, WeightsObject):
            folder = path.folder
            context().state.mark_pending(folder.bucket, folder.model, folder.version, now)
    except Exception:
        log.exception("the folder could not be left to the sweep either")


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
