"""The sweep answers dead-lettered commands: one `failed` result each, then the letter is acknowledged."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from functions.world import DeadLetterTopic, make_world
from support.builders import make_command

from modeldrop.executor import gave_up
from modeldrop.results import Status
from modeldrop.sweeper import sweep

pytestmark = pytest.mark.stack


def test_a_dead_lettered_command_is_answered_failed() -> None:
    """A command in the dead-letter topic becomes a failed result naming the attempts; garbage names no request."""
    body = json.dumps(make_command("undeploy", request_id="req-dead")).encode()
    result = gave_up(body, {"CloudPubSubDeadLetterSourceDeliveryCount": "10"})
    assert result is not None
    assert (result.request_id, result.action, result.status) == (
        "req-dead",
        "undeploy",
        Status.FAILED,
    )
    assert "gave up after 10 delivery attempts" in result.message
    assert gave_up(b"\xff not json", {}) is None


def test_the_sweep_answers_each_dead_letter_once_and_acknowledges_it(vertex_url: str) -> None:
    """Dead letters (a command twice, and one that is no command) give one failed result and leave nothing behind."""
    world = make_world(vertex_url, dead_letter_subscription="dead-letter-answers")
    letters = DeadLetterTopic.create(world)
    command = make_command("deploy", model="stuck")
    for data in (json.dumps(command).encode(), json.dumps(command).encode(), b"not a command"):
        letters.publish(data, delivery_count=10)

    first = sweep(world.ctx, datetime.now(UTC))
    again = sweep(world.ctx, datetime.now(UTC))

    results = world.results(lambda seen: len(seen) >= 1, timeout_s=5)
    mine = [r for r in results if r.request_id == command["request_id"]]
    assert [(r.status, r.terminal) for r in mine] == [(Status.FAILED, True)]
    assert "dead-lettered" in mine[0].message
    assert first.dead_letters_answered == [command["request_id"]]
    assert again.dead_letters_answered == [] and not first.errors and not again.errors
    assert letters.left() == []
