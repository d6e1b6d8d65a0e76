"""on_command's logic: a typed command becomes a started Vertex operation (or a result), never a wait."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from modeldrop import deploying, endpoint_changes
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
from modeldrop.errors import ConflictError, PermanentError
from modeldrop.events import PubSubMessage
from modeldrop.layout import VersionFolder
from modeldrop.reporting import finish, once
from modeldrop.results import Result, Status
from modeldrop.state import RequestRecord, RequestState
from modeldrop.uploads import register


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
    """Claim the request, take the endpoint's lease, start the work; transient errors propagate.

    The lease holder names the request *and* the Pub/Sub message: a redelivery of the same message
    (its attempt crashed, or timed out — the ack deadline outlasts the function's timeout, so never
    while it still runs) takes the lease straight back, while a second publish of the same request
    arriving at the same time finds the lease held, raises ConflictError, and on its retry finds the
    request finished and changes nothing.
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
        return None  # a duplicate: its operation is recorded or its result is out
    base: dict[str, Any] = {
        "request_id": command.request_id,
        "kind": "command",
        "action": command.action,
        "endpoint": endpoint,
    }
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
        try:
            _not_busy(ctx, endpoint, command.request_id)
            result = _dispatch(command, ctx, now, base)
        except PermanentError as error:
            result = _failed(base, error)
        # Recorded before the lease is released, so the next holder sees this request as handled.
        if result.terminal:
            return finish(ctx, record, result)
        ctx.publisher.publish_result(result)
        ctx.state.update_request(
            record.model_copy(
                update={"state": RequestState.RECORDED, "operation": result.operation}
            )
        )
        return result


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
        "transient errors (Vertex busy or unavailable, or the endpoint held) and was dead-lettered",
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


def _not_busy(ctx: Context, endpoint: str, request_id: str) -> None:
    """One operation at a time per endpoint: Vertex splits traffic only over what is deployed."""
    others = sorted(
        {r.request_id for r in ctx.state.operations(endpoint) if r.request_id != request_id}
    )
    if others:
        raise ConflictError(f"endpoint {endpoint} is busy with {', '.join(others)}; retrying later")


def _endpoint_of(command: Command) -> str:
    if isinstance(command, Deploy):
        return command.endpoint_name
    if isinstance(command, Register):
        raise TypeError("register names a folder, not an endpoint")
    return command.endpoint
