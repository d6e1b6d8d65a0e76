"""A request's terminal result: decided once, recorded before it is published, published at least once.

1. The result is staged in the outbox (`outbox/<request_id>.json`).
2. It is decided: the request's record takes it with a generation precondition, unless the record
   already holds one; then that one is the request's result, and ours is dropped. Two writers
   (the sweep reporting an operation's end, a redelivered command, a dead letter's answer) can
   therefore never publish two different terminal results for one request.
3. The decided result is published, then the outbox entry is cleared.

A crash after 1 leaves the outbox entry: the sweep (`publish_staged`) decides and publishes it. So a
terminal result may reach the results topic more than once (that crash, or a publish retried after a
timeout it survived), always the same one: readers keep the first per request_id.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from modeldrop.context import Context
from modeldrop.errors import ConflictError, ModeldropError, TransientError
from modeldrop.records import DEPLOY_ACTIONS, RequestRecord, RequestState
from modeldrop.results import Result

log = logging.getLogger(__name__)
# How long a staged result is left to the function that staged it before the sweep publishes it.
SETTLE = timedelta(seconds=60)
_DECIDE_TRIES = 5


def finish(ctx: Context, record: RequestRecord, result: Result) -> Result:
    """Publish `result` (a progress result at once; a terminal one through the outbox).

    Returns the request's terminal result as decided: `result`, or the one recorded before it.
    """
    if not result.terminal:
        ctx.publisher.publish_result(result)
        return result
    ctx.state.stage_result(result)
    decided = _decide(ctx, record, result)
    _publish(ctx, decided or result, publish=decided is not None)
    return decided or result


def once(ctx: Context, now: datetime, result: Result) -> Result | None:
    """Report a terminal result unless this request_id already has one."""
    record = RequestRecord(
        request_id=result.request_id,
        kind=result.kind,
        action=result.action,
        state=RequestState.STARTED,
        endpoint=result.endpoint,
        at=now,
    )
    prior = ctx.state.claim(record)
    if prior is not None and prior.state is RequestState.DONE:
        return None
    return finish(ctx, prior or record, result)


def publish_staged(ctx: Context, now: datetime) -> list[str]:
    """The sweep's part: publish every result a crashed function staged; returns their request ids."""
    published = []
    for staged in ctx.state.staged_results(before=now - SETTLE):
        record = RequestRecord(
            request_id=staged.request_id,
            kind=staged.kind,
            action=staged.action,
            state=RequestState.STARTED,
            endpoint=staged.endpoint,
            at=now,
        )
        try:
            decided = _decide(ctx, record, staged)
            _publish(ctx, decided or staged, publish=decided is not None)
        except ModeldropError as error:  # one that fails must not hold back the others
            log.warning("staged result of %s left for the next sweep: %s", staged.request_id, error)
            continue
        published.append(staged.request_id)
    return published


def _decide(ctx: Context, record: RequestRecord, result: Result) -> Result | None:
    """The request's one terminal result: the record's if it has one, else `result`, recorded.

    None for a request done before results were recorded in records: it was published then.
    """
    done = {"state": RequestState.DONE, "status": result.status.value, "result": result}
    for _ in range(_DECIDE_TRIES):
        found = ctx.state.request_versioned(result.request_id)
        if found is None:
            if ctx.state.claim(record.model_copy(update=done)) is None:
                return result
            continue  # created meanwhile: read it
        current, generation = found
        if current.state is RequestState.DONE:
            return current.result
        try:
            ctx.state.update_request(
                current.model_copy(update=done), if_generation_match=generation
            )
            return result
        except ConflictError:
            continue  # another writer moved the record: read it again
    raise TransientError(f"request {result.request_id}: its record kept changing; retried")


def _publish(ctx: Context, result: Result, publish: bool = True) -> None:
    if publish:
        ctx.publisher.publish_result(result)
    _end_deploy_note(ctx, result)
    ctx.state.clear_staged(result.request_id)


def _end_deploy_note(ctx: Context, result: Result) -> None:
    """A deploy or wake that ended is no longer in flight for the gateway (state.DeployNote)."""
    if result.action not in DEPLOY_ACTIONS or result.endpoint is None:
        return
    message = "; ".join([result.message, *result.reasons]).strip("; ")
    try:
        ctx.state.end_deploy_note(result.endpoint, result.request_id, result.status.value, message)
    except ModeldropError as error:  # a hint for the gateway, never a reason to fail the report
        log.warning("deploy note of %s not ended: %s", result.endpoint, error)
