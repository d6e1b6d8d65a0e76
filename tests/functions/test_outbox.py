"""One distinct terminal result per request, at least once: recorded before it is published, over the wire.

The crash is real in the sense that matters: the publish call raises after the result was decided
(the function dies there), and nothing but the state bucket carries it to the sweep.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from functions.test_executor import deploy, message, registered, sweep_until
from functions.world import World, make_world

from modeldrop.errors import TransientError
from modeldrop.executor import on_message
from modeldrop.records import RequestRecord, RequestState
from modeldrop.reporting import SETTLE, finish, publish_staged
from modeldrop.results import Result, Status
from modeldrop.sweeper import sweep

pytestmark = pytest.mark.stack


class DiesOnTerminal:
    """A publisher that dies on the first terminal result it is given (the function's crash)."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.died = 0

    def publish_result(self, result: Result) -> None:
        if result.terminal and not self.died:
            self.died += 1
            raise TransientError("the function died before publishing")
        self._inner.publish_result(result)  # type: ignore[attr-defined]

    def publish_command(self, command: dict[str, object]) -> None:
        self._inner.publish_command(command)  # type: ignore[attr-defined]


def terminals(world: World, request_id: str) -> list[Result]:
    return [r for r in world.results(timeout_s=1) if r.request_id == request_id and r.terminal]


def _record(request_id: str) -> RequestRecord:
    return RequestRecord(
        request_id=request_id,
        kind="command",
        action="undeploy",
        state=RequestState.STARTED,
        at=datetime.now(UTC),
    )


def _result(request_id: str, status: Status, message: str = "") -> Result:
    return Result(
        request_id=request_id, kind="command", action="undeploy", status=status, message=message
    )


def test_a_crash_between_recording_and_publishing_gives_one_distinct_result(
    vertex_url: str,
) -> None:
    """A deploy reported ready by a sweep that dies before publishing: the next sweep publishes the
    recorded `ready`, and the command's redelivery repeats it; no second distinct result."""
    world = make_world(vertex_url)
    registered(world, "outbox", "v1")
    body = deploy("outbox", version="v1")
    rid = body["request_id"]
    assert on_message(message(body), world.ctx, datetime.now(UTC)) is not None
    dying = DiesOnTerminal(world.ctx.publisher)
    crashed = dataclasses.replace(world.ctx, publisher=dying)
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    while not dying.died and datetime.now(UTC) < deadline:
        summary = sweep(crashed, datetime.now(UTC))  # the report's publish raises: skipped
    assert dying.died == 1, "the deploy never ended"
    assert summary.errors and "reporting" in summary.errors[0]
    assert terminals(world, rid) == []  # the crash lost the publish ...
    record = world.ctx.state.request(rid)
    assert record is not None and record.state is RequestState.DONE
    assert record.result is not None and record.result.status is Status.READY  # ... not the result

    # A sweep within SETTLE leaves the staged result to its writer; a later one publishes it.
    assert sweep(world.ctx, datetime.now(UTC)).results_published == []
    later = sweep(world.ctx, datetime.now(UTC) + SETTLE + timedelta(seconds=1))
    assert later.results_published == [rid]
    # A redelivery of the command repeats the recorded result (or says nothing): never another.
    on_message(message(body), world.ctx, datetime.now(UTC))
    sweep(world.ctx, datetime.now(UTC) + SETTLE + timedelta(seconds=1))
    seen = terminals(world, rid)
    assert {(r.status, r.message) for r in seen} == {(Status.READY, record.result.message)}
    assert world.ctx.state.staged_results(before=datetime.now(UTC) + timedelta(days=1)) == []


def test_two_writers_of_different_results_publish_only_the_first(vertex_url: str) -> None:
    """The sweep's `succeeded` and a late `failed` (a dead letter's answer, a retried attempt) for one
    request: whoever records first is the request's result; the other publishes that one again."""
    world = make_world(vertex_url)
    rid = "outbox-race-1"
    first = finish(world.ctx, _record(rid), _result(rid, Status.SUCCEEDED, "undeployed"))
    second = finish(world.ctx, _record(rid), _result(rid, Status.FAILED, "gave up"))
    assert first.status is Status.SUCCEEDED and second == first
    seen = terminals(world, rid)
    assert len(seen) == 2 and {r.status for r in seen} == {Status.SUCCEEDED}


def test_a_result_staged_by_a_writer_that_died_before_deciding_is_decided_by_the_sweep(
    vertex_url: str,
) -> None:
    """Staged, then the function died before the record took it: the sweep decides and publishes it;
    a staged result that lost to a recorded one is cleared with the recorded one republished."""
    world = make_world(vertex_url)
    lone, lost = "outbox-lone-1", "outbox-lost-1"
    world.ctx.state.claim(_record(lone))
    world.ctx.state.stage_result(_result(lone, Status.SUCCEEDED, "undeployed"))
    finish(world.ctx, _record(lost), _result(lost, Status.SUCCEEDED, "undeployed"))
    world.ctx.state.stage_result(_result(lost, Status.FAILED, "late"))
    published = publish_staged(world.ctx, datetime.now(UTC) + SETTLE + timedelta(seconds=1))
    assert sorted(published) == [lone, lost]
    record = world.ctx.state.request(lone)
    assert record is not None and record.state is RequestState.DONE
    assert [r.status for r in terminals(world, lone)] == [Status.SUCCEEDED]
    assert {r.status for r in terminals(world, lost)} == {Status.SUCCEEDED}
    assert publish_staged(world.ctx, datetime.now(UTC) + SETTLE + timedelta(seconds=1)) == []


def test_queued_or_recorded_never_overwrites_a_decided_request(vertex_url: str) -> None:
    """The reporting sweep holds no lease: a slower writer moving the request on must not undo it."""
    world = make_world(vertex_url)
    rid = "outbox-late-1"
    stale = _record(rid)
    finish(world.ctx, stale, _result(rid, Status.SUCCEEDED, "undeployed"))
    world.ctx.state.advance_request(stale, state=RequestState.RECORDED, operation="op")
    record = world.ctx.state.request(rid)
    assert record is not None and record.state is RequestState.DONE and record.operation is None


def test_a_deploy_reported_ready_is_published_once_and_its_end_recorded(vertex_url: str) -> None:
    """The ordinary path: one `ready`, nothing left in the outbox, and the time the sweep saw the
    deploy end recorded (the deploy grace and idle TTL run from it)."""
    world = make_world(vertex_url)
    registered(world, "outbox-plain", "v1")
    body = deploy("outbox-plain", version="v1")
    on_message(message(body), world.ctx, datetime.now(UTC))
    before = datetime.now(UTC)
    assert sweep_until(world, body["request_id"], timeout_s=60).status is Status.READY
    assert world.ctx.state.staged_results(before=datetime.now(UTC) + timedelta(days=1)) == []
    [(endpoint, _)] = world.ctx.state.ready_times()
    assert endpoint == "outbox-plain"
    assert before <= next(iter(world.ctx.state.ready_times().values())) <= datetime.now(UTC)
