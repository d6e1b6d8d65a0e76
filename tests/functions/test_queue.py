"""Busy endpoints queue: commands sent while an operation runs wait their turn, in order, over the wire."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from functions.test_executor import deploy, message, registered, sweep_until
from functions.world import DeadLetterTopic, World, make_world
from support.builders import make_command

from modeldrop.command_queue import QueueEntry
from modeldrop.executor import on_message
from modeldrop.records import RequestState
from modeldrop.results import Result, Status

pytestmark = pytest.mark.stack


def send(world: World, body: dict[str, Any]) -> Result:
    """One delivery of `body` to on_command; a busy endpoint must never make it raise."""
    result = on_message(message(body), world.ctx, datetime.now(UTC))
    assert result is not None
    return result


def terminal(world: World, request_id: str) -> list[Result]:
    return [r for r in world.results(timeout_s=0) if r.request_id == request_id and r.terminal]


def test_commands_sent_during_a_deploy_queue_and_run_in_order(vertex_url: str) -> None:
    """scale, a canary deploy and a traffic split sent while v1 deploys are queued, acknowledged, and
    each ends once, in arrival order: v1 on 2 replicas, then v2 at 10 %, then 50/50."""
    world = make_world(vertex_url)
    registered(world, "queued", "v1")
    registered(world, "queued", "v2")
    first = deploy("queued", version="v1")
    later = [
        make_command("scale", endpoint="queued", min_replicas=2, max_replicas=2),
        deploy("queued", version="v2", traffic_percent=10),
        make_command("traffic", endpoint="queued", split={"v1": 50, "v2": 50}),
    ]
    assert send(world, first).status is Status.ACCEPTED
    answers = [send(world, body) for body in later]
    assert [a.status for a in answers] == [Status.QUEUED] * 3
    assert first["request_id"] in answers[0].message
    assert answers[2].details["ahead"] == [later[0]["request_id"], later[1]["request_id"]]
    # A redelivery of a queued command changes nothing.
    assert on_message(message(later[0]), world.ctx, datetime.now(UTC)) is None
    assert len(world.ctx.state.queue.entries("queued")) == 3

    ends = [sweep_until(world, body["request_id"], timeout_s=60) for body in [first, *later]]
    assert [e.status for e in ends] == [
        Status.READY,
        Status.SUCCEEDED,
        Status.READY,
        Status.SUCCEEDED,
    ]
    assert [e.at for e in ends] == sorted(e.at for e in ends)
    for body in [first, *later]:
        assert len(terminal(world, body["request_id"])) == 1
    endpoint = world.ctx.vertex.endpoint("queued")
    assert endpoint is not None
    by_version = {d.version: d for d in endpoint.deployments}
    assert by_version["v1"].min_replicas == 2
    assert {v: endpoint.traffic_split[d.id] for v, d in by_version.items()} == {"v1": 50, "v2": 50}
    assert world.ctx.state.queue.entries("queued") == []


def test_every_kind_of_command_sent_during_a_long_deploy_ends_once(vertex_url: str) -> None:
    """scale, a second deploy, traffic, wake and an undeploy, all sent while v1 deploys (15 minutes on
    Google Cloud; run under the faithful preset it is that, scaled): none raises (so none is ever
    redelivered or dead-lettered), each ends in its own one terminal result, in arrival order."""
    world = make_world(vertex_url)
    registered(world, "busy", "v1")
    registered(world, "busy", "v2")
    first = deploy("busy", version="v1")
    later = [
        make_command("scale", endpoint="busy", min_replicas=2, max_replicas=2),
        deploy("busy", version="v2", traffic_percent=10),
        make_command("traffic", endpoint="busy", split={"v1": 50, "v2": 50}),
        make_command("wake", endpoint="busy"),
        make_command("undeploy", endpoint="busy", version="v1"),
    ]
    assert send(world, first).status is Status.ACCEPTED
    assert [send(world, body).status for body in later] == [Status.QUEUED] * len(later)
    ends = [sweep_until(world, body["request_id"], timeout_s=120) for body in [first, *later]]
    assert [e.status for e in ends] == [
        Status.READY,
        Status.SUCCEEDED,
        Status.READY,
        Status.SUCCEEDED,
        Status.SUCCEEDED,
        Status.SUCCEEDED,
    ]
    assert [e.at for e in ends] == sorted(e.at for e in ends)
    for body in [first, *later]:
        assert len(terminal(world, body["request_id"])) == 1
    endpoint = world.ctx.vertex.endpoint("busy")
    assert endpoint is not None
    assert [d.version for d in endpoint.deployments] == ["v2"]
    assert endpoint.traffic_split == {endpoint.deployments[0].id: 100}


def test_newer_commands_supersede_queued_ones_they_make_moot(vertex_url: str) -> None:
    """A queued deploy undone by a later undeploy, and a split replaced by a later one, end
    `superseded` naming the newer request; the newer ones run."""
    world = make_world(vertex_url)
    registered(world, "moot", "v1")
    registered(world, "moot", "v2")
    first = deploy("moot", version="v1")
    canary = deploy("moot", version="v2", traffic_percent=10)
    undo = make_command("undeploy", endpoint="moot", version="v2")
    send(world, first)
    assert send(world, canary).status is Status.QUEUED
    assert send(world, undo).status is Status.QUEUED

    [moot] = terminal(world, canary["request_id"])
    assert moot.status is Status.SUPERSEDED
    assert moot.details["superseded_by"] == undo["request_id"] and "undo it" in moot.message
    assert world.ctx.state.request(canary["request_id"]).state is RequestState.DONE  # type: ignore[union-attr]
    assert sweep_until(world, first["request_id"]).status is Status.READY
    done = sweep_until(world, undo["request_id"])
    assert done.status is Status.SUCCEEDED and "nothing to undeploy" in done.message
    endpoint = world.ctx.vertex.endpoint("moot")
    assert endpoint is not None and [d.version for d in endpoint.deployments] == ["v1"]


def test_delete_endpoint_supersedes_everything_queued_before_it(vertex_url: str) -> None:
    world = make_world(vertex_url)
    registered(world, "going", "v1")
    first = deploy("going", version="v1")
    send(world, first)
    queued = [
        make_command("scale", endpoint="going", min_replicas=2),
        make_command("traffic", endpoint="going", split={"v1": 100}),
    ]
    for body in queued:
        send(world, body)
    delete = make_command("delete-endpoint", endpoint="going", force=True)
    assert send(world, delete).status is Status.QUEUED
    for body in queued:
        [end] = terminal(world, body["request_id"])
        assert end.status is Status.SUPERSEDED and "deleted after it" in end.message
    assert sweep_until(world, first["request_id"]).status is Status.READY
    assert sweep_until(world, delete["request_id"], timeout_s=60).status is Status.SUCCEEDED
    assert world.ctx.vertex.endpoint("going") is None


def test_older_queued_commands_start_before_a_new_one_that_finds_the_endpoint_free(
    vertex_url: str,
) -> None:
    """A queue left behind (its sweep failed) is drained by the next command first, in order."""
    world = make_world(vertex_url)
    registered(world, "backlog", "v1")
    waiting = deploy("backlog", version="v1")
    world.ctx.state.queue.add(
        QueueEntry(
            request_id=waiting["request_id"],
            endpoint="backlog",
            action="deploy",
            arrived_at=datetime.now(UTC),
            command=waiting,
        )
    )
    newer = make_command("scale", endpoint="backlog", min_replicas=2)
    answer = send(world, newer)
    # The queued deploy started first; the scale waits for it rather than failing on no deployment.
    assert answer.status is Status.QUEUED and waiting["request_id"] in answer.message
    assert sweep_until(world, waiting["request_id"]).status is Status.READY
    assert sweep_until(world, newer["request_id"]).status is Status.SUCCEEDED


def test_a_dead_letter_of_a_queued_command_is_not_answered_failed(vertex_url: str) -> None:
    """A later delivery queued the command: its dead letter is acknowledged, and its one result is its own."""
    world = make_world(vertex_url, dead_letter_subscription="queued-dead-letters")
    letters = DeadLetterTopic.create(world)
    registered(world, "lettered", "v1")
    first = deploy("lettered", version="v1")
    second = make_command("scale", endpoint="lettered", min_replicas=2)
    send(world, first)
    assert send(world, second).status is Status.QUEUED
    letters.publish(json.dumps(second).encode(), delivery_count=5)

    assert sweep_until(world, second["request_id"], timeout_s=60).status is Status.SUCCEEDED
    assert len(terminal(world, second["request_id"])) == 1
    assert letters.left() == []
