"""The sweep's pure decisions: when operations end in which result, and which deployments are idle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from modeldrop import labels
from modeldrop.reconcile import INTENT_TIMEOUT, Action, follow, idle, longest_ttl
from modeldrop.records import OperationRecord, Seen
from modeldrop.resources import Deployment, Endpoint, Operation
from modeldrop.results import Status

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def make_deployment(**overrides: Any) -> Deployment:
    fields: dict[str, Any] = {
        "id": "111",
        "model": "m",
        "version": "v1",
        "model_resource": "projects/p/locations/r/models/m",
        "model_version_id": "1",
        "create_time": NOW - timedelta(hours=2),
        "machine_type": "g2-standard-12",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
        "min_replicas": 2,
        "max_replicas": 2,
        **overrides,
    }
    return Deployment(**fields)


def make_endpoint(
    *deployments: Deployment, ttl_s: int = 1800, keep_warm: bool = False, **extra: str
) -> Endpoint:
    found = deployments or (make_deployment(),)
    return Endpoint(
        id="e",
        resource="projects/p/locations/r/endpoints/e",
        labels={**labels.endpoint_labels("m", ttl_s, keep_warm), **extra},
        deployments=found,
        traffic_split={d.id: 100 // len(found) for d in found},
    )


def make_record(**overrides: Any) -> OperationRecord:
    fields: dict[str, Any] = {
        "operation": "op/1",
        "request_id": "r1",
        "action": "deploy",
        "endpoint": "e",
        "deployed_model_id": "111",
        "started_at": NOW - timedelta(minutes=5),
        **overrides,
    }
    return OperationRecord(**fields)


def decide(
    endpoint: Endpoint,
    last: dict[tuple[str, str], datetime] | None = None,
    busy: bool = False,
    grace_s: int = 900,
) -> list[Action]:
    return [d.action for d in idle(endpoint, last or {}, NOW, 1800, grace_s, busy)]


def test_no_predictions_for_the_ttl_means_tear_down_with_gpu_hours() -> None:
    """A deployment with no predictions in its TTL window, past grace, is torn down; the decision carries GPU-hours."""
    [decision] = idle(make_endpoint(), {}, NOW, 1800, 900, False)
    assert decision.action is Action.TEAR_DOWN
    assert decision.details["gpus"] == 2 and decision.details["gpu_hours_saved_per_day"] == 48
    assert decision.details["gpu_hours_idle"] == 4.0


def test_traffic_inside_the_window_keeps_a_deployment() -> None:
    """A prediction 10 minutes ago (TTL 30 min) keeps it; one 40 minutes ago doesn't."""
    assert decide(make_endpoint(), {("e", "111"): NOW - timedelta(minutes=10)}) == [Action.KEEP]
    assert decide(make_endpoint(), {("e", "111"): NOW - timedelta(minutes=40)}) == [
        Action.TEAR_DOWN
    ]


def test_traffic_on_another_endpoint_with_the_same_deployed_id_does_not_count() -> None:
    """Predictions are keyed by (endpoint, deployed model): another endpoint's traffic doesn't keep this one."""
    assert decide(make_endpoint(), {("other", "111"): NOW}) == [Action.TEAR_DOWN]


def test_keep_warm_ttl_zero_grace_busy_and_young_deployments_are_kept() -> None:
    """Keep-warm, TTL 0, an in-flight operation, and a deployment younger than its TTL are never torn down."""
    assert decide(make_endpoint(keep_warm=True)) == [Action.KEEP]
    assert decide(make_endpoint(ttl_s=0)) == [Action.KEEP]
    assert decide(make_endpoint(), busy=True) == [Action.KEEP]
    assert decide(make_endpoint(make_deployment(create_time=NOW - timedelta(minutes=20)))) == [
        Action.KEEP
    ]
    assert decide(make_endpoint(), grace_s=3 * 3600) == [Action.KEEP]


def test_unmanaged_endpoints_are_never_touched() -> None:
    """An endpoint without managed-by=modeldrop is kept whatever its traffic."""
    endpoint = make_endpoint(**{labels.MANAGED_BY: "someone-else"})
    assert decide(endpoint) == [Action.KEEP]


def test_each_deployment_is_judged_on_its_own_traffic() -> None:
    """On a canary endpoint, the idle version goes and the busy one stays."""
    busy, quiet = make_deployment(id="1"), make_deployment(id="2", version="v2")
    assert decide(make_endpoint(busy, quiet), {("e", "1"): NOW - timedelta(minutes=1)}) == [
        Action.KEEP,
        Action.TEAR_DOWN,
    ]


def test_the_monitoring_window_covers_the_longest_ttl() -> None:
    """One query must cover every endpoint's TTL (and the default for unlabelled ones)."""
    assert longest_ttl([make_endpoint(ttl_s=600), make_endpoint(ttl_s=7200)], 1800) == 7200
    assert longest_ttl([], 1800) == 1800


def test_a_finished_operation_reports_its_terminal_status() -> None:
    """Done deploy → ready, done teardown → torn_down, done scale → succeeded, an error → failed with Vertex's reason."""
    cases = {"deploy": Status.READY, "teardown": Status.TORN_DOWN, "scale": Status.SUCCEEDED}
    for action, status in cases.items():
        [report] = follow([make_record(action=action)], {"op/1": Operation("op/1", True)}, {}, NOW)
        assert (report.action, report.status) == (Action.REPORT, status)
    [failed] = follow(
        [make_record()],
        {"op/1": Operation("op/1", True, error="stockout", details={"log_tail": "oom"})},
        {},
        NOW,
    )
    assert (
        failed.status is Status.FAILED
        and "stockout" in failed.reasons[0]
        and "oom" in failed.reasons[0]
    )


def test_a_request_reports_only_when_every_part_ended() -> None:
    """A wake of two deployments waits for both operations, then reports once."""
    parts = [
        make_record(part=0, parts=2, operation="op/a"),
        make_record(part=1, parts=2, operation="op/b"),
    ]
    running = {"op/a": Operation("op/a", True), "op/b": Operation("op/b", False)}
    assert [r.action for r in follow(parts, running, {}, NOW)] == [Action.WAIT]
    done = {"op/a": Operation("op/a", True), "op/b": Operation("op/b", True)}
    assert [(r.action, r.status) for r in follow(parts, done, {}, NOW)] == [
        (Action.REPORT, Status.READY)
    ]
    assert [r.action for r in follow(parts[:1], done, {}, NOW)] == [Action.WAIT]


def test_an_unrecorded_operation_is_judged_by_its_effect() -> None:
    """An intent whose deployment exists is ready; one with no effect waits, then fails after the timeout."""
    intent = make_record(operation=None)
    assert follow([intent], {}, {"e": make_endpoint()}, NOW)[0].status is Status.READY
    empty = make_endpoint(make_deployment(id="999"))
    assert follow([intent], {}, {"e": empty}, NOW)[0].action is Action.WAIT
    old = make_record(operation=None, started_at=NOW - INTENT_TIMEOUT - timedelta(seconds=1))
    [report] = follow([old], {}, {"e": empty}, NOW)
    assert report.status is Status.FAILED and "send the command again" in report.reasons[0]


def test_monitorings_unknown_window_is_never_read_as_idle() -> None:
    """Without activity records, a deployment must be silent for its TTL plus Monitoring's delay:
    traffic resuming inside the not-yet-ingested minutes keeps it."""
    endpoint = make_endpoint(ttl_s=1800)
    last = {("e", "111"): NOW - timedelta(seconds=1800 + 60)}  # quiet 31 min by Monitoring
    [kept] = idle(endpoint, last, NOW, 1800, 0, False, {}, metrics_delay_s=300)
    assert kept.action is Action.KEEP and "not ingested yet" in kept.why
    [torn] = idle(endpoint, last, NOW, 1800, 0, False, {}, metrics_delay_s=0)
    assert torn.action is Action.TEAR_DOWN


def test_the_containers_activity_record_sees_routes_monitoring_does_not() -> None:
    """A chat-only deployment Monitoring never counts is kept by its activity record, and one with
    a request in flight (a long stream) is kept whatever the times say."""
    endpoint = make_endpoint(ttl_s=600)
    recent = {("e", "111"): Seen(NOW - timedelta(seconds=30), 0)}
    [kept] = idle(endpoint, {}, NOW, 600, 0, False, recent, metrics_delay_s=300)
    assert kept.action is Action.KEEP and "30 s ago" in kept.why
    streaming = {("e", "111"): Seen(NOW - timedelta(hours=1), 1)}
    [busy] = idle(endpoint, {}, NOW, 600, 0, False, streaming, metrics_delay_s=300)
    assert busy.action is Action.KEEP and "in flight" in busy.why
    quiet = {("e", "111"): Seen(NOW - timedelta(seconds=700), 0)}
    [torn] = idle(endpoint, {}, NOW, 600, 0, False, quiet, metrics_delay_s=300)
    assert torn.action is Action.TEAR_DOWN  # the record is current: no delay to wait out


def test_grace_and_ttl_run_from_our_record_of_the_deploy_ending() -> None:
    """Vertex may stamp create_time at the deploy's start: a 20-minute deploy reported ready 5 minutes
    ago is inside a 15-minute grace and a 10-minute TTL by our record, whatever create_time says."""
    started = make_deployment(create_time=NOW - timedelta(minutes=25))
    endpoint = make_endpoint(started, ttl_s=600)
    ready = {("e", "111"): NOW - timedelta(minutes=5)}
    [kept] = idle(endpoint, {}, NOW, 600, 900, False, {}, 0, ready)
    assert kept.action is Action.KEEP and "grace" in kept.why
    [torn] = idle(endpoint, {}, NOW, 600, 900, False, {}, 0, {})
    assert torn.action is Action.TEAR_DOWN
    # Past both, idleness is measured from the deploy's end, not its start.
    later = NOW + timedelta(minutes=20)
    [gone] = idle(endpoint, {}, later, 600, 900, False, {}, 0, ready)
    assert gone.action is Action.TEAR_DOWN and gone.idle_s == 25 * 60
    # A record older than create_time (a redeploy with the same id) gives way to create_time.
    stale = {("e", "111"): NOW - timedelta(hours=5)}
    [redeployed] = idle(
        make_endpoint(make_deployment(create_time=NOW - timedelta(minutes=5)), ttl_s=600),
        {},
        NOW,
        600,
        900,
        False,
        {},
        0,
        stale,
    )
    assert redeployed.action is Action.KEEP
