"""on_command's logic: a typed command becomes a started Vertex operation (or a result), never a wait."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from modeldrop import deploying, endpoint_changes
from modeldrop.command_queue import QueueEntry
from modeldrop.commands import (
    Command,
    DeleteEndpoint,
    Deploy,
    Register,
    Scale,
    Traffic,
    Undeploy,
    Wake,
    parse_command,
    peek,
)
from modeldrop.context import Context
from modeldrop.errors import PermanentError, TransientError
from modeldrop.events import PubSubMessage
from modeldrop.layout import VersionFolder
from modeldrop.queue_rules import superseded_by
from modeldrop.records import DEPLOY_ACTIONS, RequestRecord, RequestState
from modeldrop.reporting import finish, once
from modeldrop.results import Result, Status
from modeldrop.uploads import register

log = logging.getLogger(__name__)


def on_message(message: PubSubMessage, ctx: Context, now: datetime) -> Result | None:
    """The result of one commands-topic message (None for a duplicate of a finished request)."""
    try:
        command = parse_command(message.data)
    except PermanentError as error:
        return once(ctx, now, _unreadable(message, error))
    issued = command.issued_at or message.publish_time
    max_age = timedelta(seconds=ctx.settings.max_event_age_s)
    if issued is not None and now - issued > max_age:
        dropped = Result(
            request_id=command.request_id,
            kind="command",
            action=command.action,
            status=Status.DROPPED,
            message=f"the command was issued at {issued:%Y-%m-%d %H:%M:%S} UTC, more than {max_age} ago: not acted on",
        )
        return once(ctx, now, dropped)
    return execute(command, ctx, now, message_id=message.message_id)


def execute(command: Command, ctx: Context, now: datetime, message_id: str = "") -> Result | None:
    """Claim the request, take the endpoint's lease, start the work or queue it; transient errors propagate.

    The lease holder names the request *and* the Pub/Sub message: a redelivery of the same message
    (its attempt crashed, or timed out — the ack deadline outlasts the function's timeout, so never
    while it still runs) takes the lease straight back, while a second publish of the same request
    arriving at the same time finds the lease held, raises ConflictError, and on its retry finds the
    request handled and changes nothing.

    Busy is not an error: a command for an endpoint with an operation in flight (or older commands
    waiting) joins the endpoint's queue, is answered `queued` and acknowledged, and starts when its
    turn comes — here, when a later command finds the endpoint free, or in the sweep.
    """
    endpoint = None if isinstance(command, Register) else _endpoint_of(command)
    record = RequestRecord(
        request_id=command.request_id,
        kind="command",
        action=command.action,
        state=RequestState.STARTED,
        endpoint=endpoint,
        at=now,
    )
    prior = ctx.state.claim(record)
    if prior is not None and prior.state is not RequestState.STARTED:
        return None  # a duplicate: it is queued, its operation is recorded, or its result is out
    record = prior or record  # the first claim's time names the queue entry, whoever writes it
    base = _base(command.request_id, command.action, endpoint)
    if isinstance(command, Register):
        folder = VersionFolder(
            command.bucket or ctx.settings.weights_bucket, command.model, command.version
        )
        try:
            return register(folder, ctx, now, request_id=command.request_id)
        except PermanentError as error:
            return finish(ctx, record, _failed(base, error))
    assert endpoint is not None  # every other command names (or implies) an endpoint
    holder = f"{command.request_id}/{message_id}" if message_id else command.request_id
    with ctx.state.lease(endpoint, holder, now):
        # Re-read under the lease: a duplicate that held it before us may have done the work.
        current = ctx.state.request(command.request_id)
        if current is not None and current.state is not RequestState.STARTED:
            return None
        started, blocked = drain(ctx, endpoint, now)  # commands that came first go first
        if command.request_id in started:  # queued by an attempt that crashed before answering
            return started[command.request_id]
        running = _running(ctx, endpoint, command.request_id)
        if blocked or running:
            return _enqueue(ctx, command, endpoint, record, base, running)
        return _run(command, ctx, now, record, base)


def drain(ctx: Context, endpoint: str, now: datetime) -> tuple[dict[str, Result], bool]:
    """Start the endpoint's queued commands, oldest first, while no operation runs on it.

    The caller holds the endpoint's lease. Returns the results by request id, and whether commands
    are left waiting (an operation runs again, or Vertex failed transiently: logged, and the queue
    is tried again on the next command or sweep).
    """
    started: dict[str, Result] = {}
    for entry in ctx.state.queue.entries(endpoint):
        if _running(ctx, endpoint, entry.request_id):
            return started, True
        record = ctx.state.request(entry.request_id)
        if record is not None and record.state in (RequestState.RECORDED, RequestState.DONE):
            ctx.state.queue.remove(entry)  # it started before a crash left its entry behind
            continue
        record = record or _queued_record(entry)
        base = _base(entry.request_id, entry.action, endpoint)
        try:
            result = _run(parse_command(entry.command), ctx, now, record, base)
        except PermanentError as error:  # the entry no longer parses (written by another release)
            result = finish(ctx, record, _failed(base, error))
        except TransientError as error:
            log.warning("queued %s on %s left for later: %s", entry.request_id, endpoint, error)
            return started, True
        ctx.state.queue.remove(entry)
        started[entry.request_id] = result
    return started, False


def _run(
    command: Command, ctx: Context, now: datetime, record: RequestRecord, base: dict[str, Any]
) -> Result:
    """Start the command's work (the caller holds the lease and the endpoint is free)."""
    if command.action in DEPLOY_ACTIONS:
        # Before the endpoint is made (an operation of its own): the gateway holds requests from
        # the moment the deploy is accepted, not from when Vertex is asked to deploy.
        ctx.state.note_deploy(_endpoint_of(command), command.request_id, command.action, now)
    try:
        result = _dispatch(command, ctx, now, base)
    except PermanentError as error:
        result = _failed(base, error)
    # Recorded before the lease is released, so the next holder sees this request as handled.
    if result.terminal:
        return finish(ctx, record, result)
    ctx.publisher.publish_result(result)
    ctx.state.advance_request(record, state=RequestState.RECORDED, operation=result.operation)
    return result


def _enqueue(
    ctx: Context,
    command: Command,
    endpoint: str,
    record: RequestRecord,
    base: dict[str, Any],
    running: list[str],
) -> Result:
    """Queue the command behind what runs and waits on the endpoint, ending what it makes moot."""
    ahead = []
    for entry in ctx.state.queue.entries(endpoint):
        if entry.request_id == command.request_id:
            continue
        older = ctx.state.request(entry.request_id)
        if older is not None and older.state in (RequestState.RECORDED, RequestState.DONE):
            continue  # started already; the next drain clears its entry
        try:
            why = superseded_by(parse_command(entry.command), command)
        except PermanentError:
            why = None
        if why is None:
            ahead.append(entry.request_id)
            continue
        superseded = Result(
            status=Status.SUPERSEDED,
            message=f"superseded by {command.request_id} before it started ({why}): not acted on",
            details={"superseded_by": command.request_id},
            **_base(entry.request_id, entry.action, endpoint),
        )
        finish(ctx, older or _queued_record(entry), superseded)
        ctx.state.queue.remove(entry)
    ctx.state.queue.add(
        QueueEntry(
            request_id=command.request_id,
            endpoint=endpoint,
            action=command.action,
            arrived_at=record.at,
            command=command.model_dump(mode="json", exclude_unset=True),
        )
    )
    if command.action in DEPLOY_ACTIONS:  # held for by the gateway while it waits its turn
        ctx.state.note_deploy(endpoint, command.request_id, command.action, record.at)
    waits = [f"{', '.join(running)} running"] if running else []
    waits += [f"{len(ahead)} queued before it"] if ahead else []
    queued = Result(
        status=Status.QUEUED,
        message=f"{endpoint} is busy ({'; '.join(waits) or 'an operation ending'}): "
        f"this {command.action} starts when they end",
        details={"running": running, "ahead": ahead},
        **base,
    )
    ctx.publisher.publish_result(queued)
    ctx.state.advance_request(record, state=RequestState.QUEUED)
    return queued


def _queued_record(entry: QueueEntry) -> RequestRecord:
    return RequestRecord(
        request_id=entry.request_id,
        kind="command",
        action=entry.action,
        state=RequestState.QUEUED,
        endpoint=entry.endpoint,
        at=entry.arrived_at,
    )


def _base(request_id: str, action: str, endpoint: str | None) -> dict[str, Any]:
    return {"request_id": request_id, "kind": "command", "action": action, "endpoint": endpoint}


def _unreadable(message: PubSubMessage, error: PermanentError) -> Result:
    """The failed result of a message that is not a valid command, keyed by a valid request id.

    A request id that breaks the pattern (a trailing newline, an emoji) is never echoed into a
    result: subscribers filter on it. The message id stands in, and the reasons say so.
    """
    found = peek(message.data)
    reasons = list(error.reasons)
    rid = found.request_id
    if rid is None:
        rid = f"invalid-{message.message_id or 'message'}"
        if found.request_id_problem:
            reasons.append(f"{found.request_id_problem}: this result is keyed by {rid} instead")
    return Result(
        request_id=rid,
        kind="command",
        action=found.action,
        status=Status.FAILED,
        message=str(error),
        reasons=reasons,
    )


def gave_up(data: bytes, attributes: Mapping[str, str]) -> Result | None:
    """The `failed` result of a command Pub/Sub dead-lettered; None when the body names no request.

    Only commands that kept failing with transient errors get there: a bad one is answered at once.
    Never raises, whatever the body holds: one bad letter must not stop the sweep.
    """
    found = peek(data)
    if found.request_id is None:
        return None
    attempts = attributes.get("CloudPubSubDeadLetterSourceDeliveryCount", "every")
    return Result(
        request_id=found.request_id,
        kind="command",
        action=found.action,
        status=Status.FAILED,
        message=f"gave up after {attempts} delivery attempts: the command kept failing with "
        "transient errors (Vertex unavailable, or the endpoint's lease held) and was dead-lettered",
        reasons=["dead-lettered: publish the command again (a new request_id) to retry"],
    )


def _failed(base: dict[str, Any], error: PermanentError) -> Result:
    return Result(status=Status.FAILED, message=str(error), reasons=error.reasons, **base)


def _dispatch(command: Command, ctx: Context, now: datetime, base: dict[str, Any]) -> Result:
    if isinstance(command, Deploy):
        return deploying.deploy(command, ctx, now, base)
    if isinstance(command, Wake):
        return deploying.wake(command, ctx, now, base)
    if isinstance(command, Undeploy):
        return endpoint_changes.undeploy(command, ctx, now, base)
    if isinstance(command, Scale):
        return endpoint_changes.scale(command, ctx, now, base)
    if isinstance(command, Traffic):
        return endpoint_changes.split_traffic(command, ctx, now, base)
    if isinstance(command, DeleteEndpoint):
        return endpoint_changes.delete_endpoint(command, ctx, now, base)
    raise TypeError(f"no handler for {command.action}")


def _running(ctx: Context, endpoint: str, request_id: str) -> list[str]:
    """Other requests with operations recorded on the endpoint: one operation at a time per endpoint."""
    return sorted(
        {r.request_id for r in ctx.state.operations(endpoint) if r.request_id != request_id}
    )


def _endpoint_of(command: Command) -> str:
    if isinstance(command, Deploy):
        return command.endpoint_name
    if isinstance(command, Register):
        raise TypeError("register names a folder, not an endpoint")
    return command.endpoint
