"""The gateway's pure decisions: what a request does for each state of its endpoint."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from modeldrop.gateway_rules import (
    Action,
    DeployNote,
    Observation,
    Phase,
    Serving,
    WakeNote,
    activity_period_s,
    backoff_s,
    decide,
    is_scale_up,
    retry_after_s,
    target,
    wake_request_id,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TIMEOUT = 1200.0


def seen(**overrides: object) -> Observation:
    """An endpoint that exists and serves nothing, nothing torn down; fields overridden."""
    return replace(Observation("ep", True), **overrides)  # type: ignore[arg-type]


def test_a_serving_endpoint_is_proxied() -> None:
    """A deployment with traffic: proxy, whatever the wake records say."""
    decision = decide(seen(serving=(Serving("1", "m", 100),), teardown_at=T0), 0, TIMEOUT)
    assert (decision.action, decision.phase) == (Action.PROXY, Phase.READY)


def test_a_dedicated_endpoint_is_proxied_once_its_dns_is_known_and_held_until_then() -> None:
    """Dedicated with its DNS: proxy; dedicated without it (the shared host would refuse it): hold as deploying, past the deadline 503."""
    serving = (Serving("1", "m", 100),)
    known = seen(serving=serving, dedicated=True, dedicated_dns="ep.r-1.prediction.vertexai.goog")
    assert decide(known, 0, TIMEOUT).action is Action.PROXY and known.routable
    awaiting = seen(serving=serving, dedicated=True)
    assert awaiting.awaiting_dns and not awaiting.routable
    held = decide(awaiting, 0, TIMEOUT)
    assert (held.action, held.phase) == (Action.HOLD, Phase.DEPLOYING)
    assert "dedicated DNS" in held.reason
    assert decide(awaiting, TIMEOUT, TIMEOUT).action is Action.GIVE_UP


def test_an_unknown_endpoint_is_404() -> None:
    """No endpoint and no teardown record: not found."""
    decision = decide(seen(exists=False), 0, TIMEOUT)
    assert (decision.action, decision.phase) == (Action.NOT_FOUND, Phase.UNKNOWN)


def test_an_endpoint_with_nothing_to_wake_is_409_with_the_reason() -> None:
    """Nothing deployed, nothing torn down, no wake under way: conflict, saying to deploy."""
    decision = decide(seen(), 0, TIMEOUT)
    assert decision.action is Action.CONFLICT
    assert "send a deploy command" in decision.reason


def test_a_torn_down_endpoint_is_woken_with_the_request_id_of_its_sleep() -> None:
    """A teardown record and no wake note for it: wake, with the id derived from the record."""
    decision = decide(seen(teardown_at=T0), 0, TIMEOUT)
    assert (decision.action, decision.phase) == (Action.WAKE, Phase.ASLEEP)
    assert decision.wake_request_id == wake_request_id("ep", T0)


def test_one_sleep_gives_one_request_id_and_the_next_sleep_another() -> None:
    """Deterministic per teardown record (every instance derives the same), new for a new sleep."""
    assert wake_request_id("ep", T0) == wake_request_id("ep", T0)
    assert wake_request_id("ep", T0) != wake_request_id("ep", T0 + timedelta(microseconds=1))
    assert wake_request_id("a" * 63, T0).startswith("gateway-wake-")
    assert len(wake_request_id("a" * 63, T0)) <= 128


def test_a_wake_already_published_for_this_sleep_is_held_not_sent_again() -> None:
    """The note names this sleep's request id: hold."""
    note = WakeNote(wake_request_id("ep", T0), T0)
    decision = decide(seen(teardown_at=T0, wake=note), 5, TIMEOUT)
    assert (decision.action, decision.phase) == (Action.HOLD, Phase.WAKING)


def test_a_note_of_an_earlier_sleep_does_not_stop_this_sleeps_wake() -> None:
    """A note for an older teardown (woken, then asleep again) is not this sleep's wake."""
    old = WakeNote(wake_request_id("ep", T0), T0, outcome="ready")
    later = T0 + timedelta(hours=1)
    assert decide(seen(teardown_at=later, wake=old), 0, TIMEOUT).action is Action.WAKE


def test_a_wake_under_way_after_the_teardown_record_is_taken_is_held() -> None:
    """The wake consumed the teardown record; its request is not done: hold."""
    note = WakeNote(wake_request_id("ep", T0), T0)
    decision = decide(seen(wake=note), 30, TIMEOUT)
    assert (decision.action, decision.phase) == (Action.HOLD, Phase.WAKING)


def test_a_failed_wake_ends_held_requests_with_its_reason() -> None:
    """The wake's request ended failed: 502 naming it and Vertex's reason, no waiting to the deadline."""
    note = WakeNote(wake_request_id("ep", T0), T0, outcome="failed", message="stockout")
    decision = decide(seen(wake=note), 30, TIMEOUT)
    assert (decision.action, decision.phase) == (Action.FAILED, Phase.WAKE_FAILED)
    assert "stockout" in decision.reason


def test_a_woken_endpoint_that_serves_nothing_again_has_nothing_to_wake() -> None:
    """The wake ended ready but nothing serves and nothing was torn down since: 409."""
    note = WakeNote(wake_request_id("ep", T0), T0, outcome="ready")
    assert decide(seen(wake=note), 0, TIMEOUT).action is Action.CONFLICT


@pytest.mark.parametrize(
    ("teardown", "note_for_it", "phase"),
    [(True, False, Phase.ASLEEP), (True, True, Phase.WAKING), (False, True, Phase.WAKING)],
)
def test_past_the_deadline_a_held_request_gives_up_naming_the_state(
    teardown: bool, note_for_it: bool, phase: Phase
) -> None:
    """At the wake timeout: give up (503), with the phase the endpoint is in."""
    note = WakeNote(wake_request_id("ep", T0), T0) if note_for_it else None
    decision = decide(seen(teardown_at=T0 if teardown else None, wake=note), TIMEOUT, TIMEOUT)
    assert (decision.action, decision.phase) == (Action.GIVE_UP, phase)


def test_the_served_model_is_the_main_deployments_model() -> None:
    """The model name sent to the container: the deployment with most traffic, else the label."""
    two = (Serving("1", "old", 10), Serving("2", "new", 90))
    assert seen(serving=two).served_model == "new"
    assert seen(model_label="labelled").served_model == "labelled"
    assert seen().served_model == "ep"


def test_only_vertexs_scale_up_answer_counts_as_scaling_up() -> None:
    """429 with Vertex's 'not yet ready' text is a scale-up; a quota 429 is not."""
    text = "Model is not yet ready for inference. Please wait while model completes scale-up"
    assert is_scale_up(429, text)
    assert not is_scale_up(429, "Quota exceeded for aiplatform.googleapis.com/online_prediction")
    assert not is_scale_up(503, text)


def test_backoff_grows_to_its_cap_and_retry_after_is_bounded() -> None:
    """0.5 s doubling to the cap; Retry-After a tenth of the deadline within 5-60 s."""
    assert [backoff_s(n, 10) for n in range(6)] == [0.5, 1, 2, 4, 8, 10]
    assert backoff_s(10_000, 10) == 10
    assert (retry_after_s(1200), retry_after_s(180), retry_after_s(10)) == (60, 18, 5)


@pytest.mark.parametrize(
    ("model", "endpoint", "adapter"),
    [("ep", "ep", None), ("ep:sql-lora", "ep", "sql-lora"), ("1234", "1234", None)],
)
def test_model_names_an_endpoint_and_maybe_an_adapter(
    model: str, endpoint: str, adapter: str | None
) -> None:
    """`<endpoint>` or `<endpoint>:<adapter>`."""
    assert (target(model).endpoint, target(model).adapter) == (endpoint, adapter)


@pytest.mark.parametrize("model", [None, "", 7, "Bad_Name", "ep:", "ep:bad/adapter"])
def test_a_model_that_names_no_endpoint_is_refused(model: object) -> None:
    """Anything else is a ValueError saying what is wrong."""
    with pytest.raises(ValueError, match="model"):
        target(model)


def test_a_deploy_someone_else_started_is_held_not_refused() -> None:
    """A user's deploy in flight on an endpoint serving nothing: hold (deploying), no wake, no 409."""
    decision = decide(seen(deploy=DeployNote("r-1", "deploy", T0)), 0, TIMEOUT)
    assert (decision.action, decision.phase) == (Action.HOLD, Phase.DEPLOYING)
    assert decision.wake_request_id == "r-1"


def test_a_users_wake_in_flight_on_a_sleeping_endpoint_is_held_without_a_wake_of_our_own() -> None:
    """`modeldrop wake` sent after the teardown: waking, and the gateway publishes nothing."""
    note = DeployNote("r-2", "wake", T0 + timedelta(minutes=1))
    decision = decide(seen(teardown_at=T0, deploy=note), 0, TIMEOUT)
    assert (decision.action, decision.phase) == (Action.HOLD, Phase.WAKING)


def test_a_deploy_note_older_than_the_teardown_is_ignored() -> None:
    """The sweep tears down only when nothing runs: an older note's deploy is over, so wake."""
    note = DeployNote("r-3", "deploy", T0 - timedelta(hours=1))
    assert decide(seen(teardown_at=T0, deploy=note), 0, TIMEOUT).action is Action.WAKE


def test_a_deploy_in_flight_on_an_endpoint_not_created_yet_is_held() -> None:
    """The note comes before Vertex shows the endpoint: held, not 404."""
    decision = decide(seen(exists=False, deploy=DeployNote("r-4", "deploy", T0)), 0, TIMEOUT)
    assert decision.action is Action.HOLD


def test_a_held_request_whose_deploy_failed_is_502_with_vertexs_reason() -> None:
    """Held for a deploy that ended failed: 502 with the reason; a fresh request gets 409 saying so."""
    note = DeployNote("r-5", "deploy", T0, "failed", "quota exceeded")
    held = decide(seen(deploy=note), 30, TIMEOUT)
    assert (held.action, held.phase) == (Action.FAILED, Phase.WAKE_FAILED)
    assert "quota exceeded" in held.reason
    fresh = decide(seen(deploy=note), 0, TIMEOUT)
    assert fresh.action is Action.CONFLICT and "r-5" in fresh.reason


def test_a_deploy_that_ended_ready_changes_nothing_once_nothing_serves() -> None:
    """Deployed then undeployed by hand: nothing in flight, nothing torn down: 409."""
    note = DeployNote("r-6", "deploy", T0, "ready")
    assert decide(seen(deploy=note), 30, TIMEOUT).action is Action.CONFLICT


def test_a_deploy_in_flight_past_the_deadline_is_given_up() -> None:
    """Held past the wake timeout on someone's deploy: 503 naming the state."""
    decision = decide(seen(deploy=DeployNote("r-7", "deploy", T0)), TIMEOUT, TIMEOUT)
    assert (decision.action, decision.phase) == (Action.GIVE_UP, Phase.DEPLOYING)


def test_the_activity_period_is_at_most_a_quarter_of_the_endpoints_idle_ttl() -> None:
    """A 20 s TTL under the 60 s default: a record every 5 s; long TTLs keep the period; never
    under a second; a TTL of 0 (never idle) or unknown keeps it."""
    assert activity_period_s(60, 20) == 5
    assert activity_period_s(60, 1800) == 60
    assert activity_period_s(60, 2) == 1
    assert activity_period_s(60, 0) == 60 and activity_period_s(60, None) == 60
