"""The faithful preset's pure rules: presets and overrides, probes, ids, machines, quotas, JSON limits, metric delay."""

from __future__ import annotations

import json

import pytest

from local.vertex import (
    dedicated,
    jsonbody,
    machines,
    naming,
    probes,
    quota,
    scale_to_zero,
    versions,
)
from local.vertex.errors import ApiError
from local.vertex.fidelity import FAITHFUL, Fidelity, build
from local.vertex.monitoring import PredictionCounts, Query
from local.vertex.resources import DedicatedResources, DeployedModel, Endpoint, MachineSpec
from local.vertex.settings import from_args, parser


def test_legacy_is_the_default_and_faithful_turns_every_rule_on() -> None:
    """Without a flag or env the emulator is legacy; faithful has strict rules, timings and delays."""
    legacy = from_args(parser().parse_args([]), env={}).fidelity
    assert legacy == Fidelity() and legacy.seconds("deploy_gpu") == 0
    faithful = from_args(parser().parse_args(["--fidelity", "faithful"]), env={}).fidelity
    assert faithful.strict_requests and faithful.inflight_undeploy and faithful.merged_labels
    assert faithful.seconds("deploy_gpu") == 1200 and faithful.ingest_delay_scaled_s == 180
    assert faithful.counted_routes == {"predict", "rawPredict"}


def test_the_environment_picks_the_preset_scale_and_rules_and_flags_win() -> None:
    """MODELDROP_VERTEX_FIDELITY/_TIME_SCALE/_RULES choose without flags; a flag overrides them."""
    env = {
        "MODELDROP_VERTEX_FIDELITY": "faithful",
        "MODELDROP_VERTEX_TIME_SCALE": "0.02",
        "MODELDROP_VERTEX_RULES": "concurrent_ops=allow;counted_routes=predict,streamRawPredict",
    }
    fidelity = from_args(parser().parse_args([]), env=env).fidelity
    assert fidelity.preset == "faithful" and fidelity.seconds("deploy_cpu") == pytest.approx(12)
    assert fidelity.concurrent_ops == "allow"
    assert fidelity.counted_routes == {"predict", "streamRawPredict"}
    flagged = from_args(parser().parse_args(["--fidelity", "legacy"]), env=env).fidelity
    assert flagged.preset == "legacy"


@pytest.mark.parametrize(
    ("rules", "reason"),
    [
        ({"no_such_rule": "1"}, "unknown rule"),
        ({"concurrent_ops": "sometimes"}, "must be one of"),
        ({"counted_routes": "predict,explain"}, "unknown routes"),
        ({"strict_requests": "maybe"}, "on/off"),
    ],
)
def test_bad_rule_overrides_are_refused(rules: dict[str, str], reason: str) -> None:
    """An unknown rule, an unknown variant or a bad value fails at start, naming it."""
    with pytest.raises(ValueError, match=reason):
        build("faithful", None, rules)


def test_rule_overrides_set_variants_and_durations() -> None:
    """`--rule` picks an assumed variant and a modelled duration."""
    fidelity = build("faithful", 0.5, {"probe_equal": "accept", "duration.deploy_gpu": "900"})
    assert fidelity.probe_equal == "accept" and fidelity.seconds("deploy_gpu") == 450


@pytest.mark.parametrize(
    ("probe", "equal_allowed", "ok"),
    [
        ({"periodSeconds": 5, "timeoutSeconds": 10}, False, True),
        ({"periodSeconds": 30, "timeoutSeconds": 10}, False, False),
        ({"periodSeconds": 10, "timeoutSeconds": 10}, False, False),
        ({"periodSeconds": 10, "timeoutSeconds": 10}, True, True),
        ({"periodSeconds": 5}, True, False),  # timeout defaults to 1
        ({"periodSeconds": 0, "timeoutSeconds": 10}, False, False),
        ({"timeoutSeconds": 20, "failureThreshold": 0}, False, False),
        ({"timeoutSeconds": 20, "httpGet": {}, "exec": {}}, False, False),
    ],
)
def test_probe_period_must_be_below_timeout(
    probe: dict[str, object], equal_allowed: bool, ok: bool
) -> None:
    """Probe.period_seconds < timeout_seconds after defaults (equality per the chosen reading), minimums held."""
    if ok:
        probes.check(probe, "health_probe", equal_allowed)
    else:
        with pytest.raises(ApiError) as error:
            probes.check(probe, "health_probe", equal_allowed)
        assert error.value.status == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    ("endpoint_id", "ok"),
    [
        ("gemma-2b", True),
        ("a", True),
        ("123456789", True),
        ("7b-chat", False),
        ("1234567890", False),
        ("0123", False),
        ("gemma-", False),
        ("Gemma", False),
        ("a" * 63, True),
        ("a" * 64, False),
    ],
)
def test_strict_endpoint_ids_follow_create_endpoint_request(endpoint_id: str, ok: bool) -> None:
    """A letter-first id is [a-z0-9-] ending alphanumeric (<= 63); a digit-first id is <= 9 digits, no leading 0."""
    if ok:
        naming.check_endpoint_id(endpoint_id, strict=True)
    else:
        with pytest.raises(ApiError, match="Invalid endpoint_id"):
            naming.check_endpoint_id(endpoint_id, strict=True)
    naming.check_endpoint_id("7b-chat")  # legacy takes it


def test_display_names_and_label_lengths() -> None:
    """Strict display names are at most 128 code points; label length follows the chosen limit."""
    naming.check_display_name("é" * 128, "endpoint", strict=True)
    with pytest.raises(ApiError, match="at most 128"):
        naming.check_display_name("x" * 129, "endpoint", strict=True)
    naming.check_display_name("x" * 129, "endpoint")
    with pytest.raises(ApiError, match="at most 63"):
        naming.check_labels({"k": "v" * 64})
    naming.check_labels({"k": "v" * 64}, max_length=64)


@pytest.mark.parametrize(
    ("machine", "accelerator", "count", "ok"),
    [
        ("g2-standard-8", "NVIDIA_L4", 1, True),
        ("g2-standard-24", "NVIDIA_L4", 1, False),
        ("n1-standard-4", "NVIDIA_L4", 1, False),
        ("n1-standard-4", "NVIDIA_TESLA_T4", 1, True),
        ("n1-standard-4", "NVIDIA_TESLA_T4", 3, False),
        ("e2-standard-4", "NVIDIA_TESLA_T4", 1, False),
        ("n1-standard-8", None, 0, True),
        ("a3-highgpu-1g", "NVIDIA_H100_80GB", 1, True),
        ("a3-highgpu-2g", "NVIDIA_H100_80GB", 1, False),
        ("x9-giant-1", None, 0, False),
    ],
)
def test_machine_and_accelerator_combinations(
    machine: str, accelerator: str | None, count: int, ok: bool
) -> None:
    """Strict: the family takes the accelerator, in the count the machine type comes with."""
    spec = MachineSpec(machine_type=machine, accelerator_type=accelerator, accelerator_count=count)
    if ok:
        machines.check_machine(spec)
    else:
        with pytest.raises(ApiError) as error:
            machines.check_machine(spec)
        assert error.value.status == "INVALID_ARGUMENT"


def test_quota_is_refused_at_once_naming_its_metric() -> None:
    """A deploy over the GPU quota is RESOURCE_EXHAUSTED naming the serving quota metric."""
    spec = MachineSpec(
        machine_type="g2-standard-8", accelerator_type="NVIDIA_L4", accelerator_count=1
    )
    deployed = DeployedModel(
        dedicated_resources=DedicatedResources(
            machine_spec=spec, min_replica_count=1, max_replica_count=2
        )
    )
    quota.check({"NVIDIA_L4": 2}, spec, deployed, [])
    with pytest.raises(ApiError, match="custom_model_serving_nvidia_l4_gpus") as error:
        quota.check({"NVIDIA_L4": 1}, spec, deployed, [])
    assert error.value.http_code == 429


def test_deep_and_large_json_is_invalid_argument_never_a_crash() -> None:
    """Nesting past the depth limit (even past Python's recursion limit) and oversize bodies are 400s."""
    for depth in (101, 50_000):
        with pytest.raises(ApiError, match="nests deeper") as error:
            jsonbody.loads(b"[" * depth + b"]" * depth, 100, 10**7)
        assert error.value.http_code == 400
    assert jsonbody.loads(b"[" * 100 + b"]" * 100, 100, 10**7) is not None
    assert jsonbody.loads(json.dumps({"a": "[[[[" * 100}).encode(), 100, 10**7)
    with pytest.raises(ApiError, match="payload size exceeds"):
        jsonbody.loads(b"[1, 2, 3]", 100, 4)
    with pytest.raises(ApiError, match="Invalid JSON"):
        jsonbody.loads(b"{nope", 100, 100)


def _query(end: float) -> Query:
    return Query.parse(
        [
            (
                "filter",
                'metric.type = "aiplatform.googleapis.com/prediction/online/prediction_count"',
            ),
            ("interval.startTime", "1970-01-01T00:00:00Z"),
            (
                "interval.endTime",
                f"1970-01-01T{int(end) // 3600:02d}:{int(end) % 3600 // 60:02d}:{int(end) % 60:02d}Z",
            ),
        ]
    )


def test_faithful_metrics_show_after_the_sample_closes_and_the_ingestion_delay() -> None:
    """A prediction at 10:30 counts in the sample ending 11:00, visible at 11:00 + 180 s, not before."""
    counts = PredictionCounts(fidelity=FAITHFUL)
    counts.record("projects/p/locations/l/endpoints/e", "1", at=630)
    assert counts.query("p", _query(3000), now=659) == []
    assert counts.query("p", _query(3000), now=660 + 179) == []
    [series] = counts.query("p", _query(3000), now=660 + 180)
    assert series["points"][0]["value"] == {"int64Value": "1"}
    legacy = PredictionCounts()
    legacy.record("projects/p/locations/l/endpoints/e", "1", at=630)
    assert legacy.query("p", _query(3000), now=631)


def _zeroable(**overrides: object) -> DedicatedResources:
    fields = {
        "machineSpec": {"machineType": "n1-standard-4"},
        "minReplicaCount": 0,
        "maxReplicaCount": 1,
        **overrides,
    }
    return DedicatedResources.model_validate(fields)


def test_scale_to_zero_initial_replicas_follow_the_rule() -> None:
    """minReplicaCount 0 without initialReplicaCount: faithful refuses (stz_initial=required), legacy fills 1."""
    with pytest.raises(ApiError, match="larger than 0"):
        scale_to_zero.check_replicas(_zeroable(), versions.V1BETA1, FAITHFUL)
    filled = _zeroable()
    scale_to_zero.check_replicas(filled, versions.V1BETA1, Fidelity())
    assert filled.initial_replica_count == 1
    with pytest.raises(ApiError, match="at least 1"):
        scale_to_zero.check_replicas(_zeroable(), versions.V1, Fidelity())
    with pytest.raises(ApiError, match='Unknown name "initialReplicaCount"'):
        scale_to_zero.check_replicas(_zeroable(initialReplicaCount=1), versions.V1, Fidelity())


def test_scale_to_zero_endpoint_limits_are_rules() -> None:
    """One model per endpoint and dedicated endpoints only hold under faithful and can be turned off."""
    shared = Endpoint(name="projects/p/locations/l/endpoints/e", displayName="e")
    resources = _zeroable(initialReplicaCount=1)
    with pytest.raises(ApiError, match="dedicated endpoint"):
        scale_to_zero.check_endpoint(shared, [], resources, FAITHFUL)
    dedicated = shared.model_copy(update={"dedicated_endpoint_enabled": True})
    with pytest.raises(ApiError, match="only model"):
        scale_to_zero.check_endpoint(dedicated, ["7"], resources, FAITHFUL)
    relaxed = build("faithful", None, {"stz_single_model": "off", "stz_dedicated_only": "off"})
    scale_to_zero.check_endpoint(shared, ["7"], resources, relaxed)


def test_a_dedicated_endpoint_answers_on_its_dns_only_unless_the_rule_is_off() -> None:
    """Its DNS is {endpoint}.{region}-{project number}.prediction.vertexai.goog (a stable number per
    project id); another host is 400 FAILED_PRECONDITION naming it, in both presets; off: answered."""
    name = "projects/my-project/locations/europe-west4/endpoints/e"
    dns = dedicated.dns(name)
    number = dedicated.project_number("my-project")
    assert dns == f"e.europe-west4-{number}.prediction.vertexai.goog"
    assert len(number) == 12 and number == dedicated.project_number("my-project")
    assert dedicated.project_number("841529064496") == "841529064496"
    endpoint = Endpoint(
        name=name, displayName="e", dedicatedEndpointEnabled=True, dedicatedEndpointDns=dns
    )
    for fidelity in (Fidelity(), FAITHFUL):
        dedicated.check_host(endpoint, dns, fidelity)
        dedicated.check_host(
            endpoint, f"{dns.upper()}:8080", fidelity
        )  # curl --resolve keeps the port
        with pytest.raises(ApiError, match=f"https://{dns}") as error:
            dedicated.check_host(endpoint, "europe-west4-aiplatform.googleapis.com", fidelity)
        assert error.value.status == "FAILED_PRECONDITION" and error.value.http_code == 400
    shared = Endpoint(name=name, displayName="e")
    dedicated.check_host(shared, "127.0.0.1:9", FAITHFUL)
    relaxed = build("faithful", None, {"dedicated_dns_only": "off"})
    dedicated.check_host(endpoint, "127.0.0.1:9", relaxed)
