"""Publishing a request's terminal result exactly once, keyed by its request_id in the state bucket."""

from __future__ import annotations

from datetime import datetime

from modeldrop.context import Context
from modeldrop.records import RequestRecord, RequestState
from modeldrop.results import Result


def finish(ctx: Context, record: RequestRecord, result: Result) -> Result:
    """Publish `result`, then mark the request done (a crash in between republishes: at-least-once)."""
    ctx.publisher.publish_result(result)
    if result.terminal:
        done = {"state": RequestState.DONE, "status": result.status.value}
        ctx.state.update_request(record.model_copy(update=done))
    return result


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
