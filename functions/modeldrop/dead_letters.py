"""The sweep's answers to dead letters: each command Pub/Sub gave up on gets one `failed` result."""

from __future__ import annotations

import logging
from datetime import datetime

from modeldrop.context import Context
from modeldrop.errors import ModeldropError
from modeldrop.executor import gave_up
from modeldrop.records import RequestState
from modeldrop.reporting import once
from modeldrop.sweep_summary import Summary, skip

log = logging.getLogger("modeldrop.sweeper")
# Dead letters answered per sweep; more wait for the next tick.
DEAD_LETTER_BATCH = 100


def answer_dead_letters(ctx: Context, now: datetime, summary: Summary) -> None:
    """Give each dead-lettered command its `failed` result (once), then acknowledge it."""
    if ctx.dead_letters is None:
        return
    try:
        letters = ctx.dead_letters.pull(DEAD_LETTER_BATCH)
    except ModeldropError as error:
        skip(summary, "pulling dead letters", error)
        return
    answered = []
    for letter in letters:
        try:
            result = gave_up(letter.data, letter.attributes)
            if result is not None and _in_hand(ctx, result.request_id):
                # A later delivery queued or started it: its own result will come.
                log.info("dead letter %s: %s is in hand", letter.message_id, result.request_id)
            elif result is not None and once(ctx, now, result) is not None:
                summary.dead_letters_answered.append(result.request_id)
        except ModeldropError as error:
            skip(summary, f"answering dead letter {letter.message_id}", error)
            continue  # not acknowledged: it comes back on a later sweep
        except Exception as error:
            # A fault in modeldrop, not in the platform: retrying would only repeat it every tick.
            skip(summary, f"answering dead letter {letter.message_id} (acknowledged)", error)
            answered.append(letter.ack_id)
            continue
        if result is None:
            log.warning(
                "dead letter %s names no request; acknowledged: %s",
                letter.message_id,
                letter.attributes,
            )
        answered.append(letter.ack_id)
    try:
        ctx.dead_letters.ack(answered)
    except ModeldropError as error:
        skip(summary, "acknowledging dead letters", error)


def _in_hand(ctx: Context, request_id: str) -> bool:
    """Whether the request is queued or its operation started (a `failed` now would be false)."""
    record = ctx.state.request(request_id)
    if record is None or record.state is RequestState.DONE:
        return False
    if record.state in (RequestState.QUEUED, RequestState.RECORDED):
        return True
    # Started, then the function died: an intent it recorded is followed like any operation.
    return record.endpoint is not None and any(
        r.request_id == request_id for r in ctx.state.operations(record.endpoint)
    )
