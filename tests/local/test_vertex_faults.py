"""Fault injection: seeded per-method errors, latency, GPU stockouts, slow and never-ready deploys."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.processes import stop
from local.vertex.testing import V1, Running, launch


@pytest.fixture(scope="module")
def vertex(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = launch(tmp_path_factory.mktemp("vertex-faults"))
    try:
        yield running
    finally:
        stop(running.child)


@pytest.fixture(autouse=True)
def no_faults_left(vertex: Running) -> Iterator[None]:
    yield
    httpx.delete(f"{vertex.url}/emulator/faults")


def set_faults(vertex: Running, **config: Any) -> None:
    vertex.call("PUT", "/emulator/faults", json=config)


def statuses(vertex: Running, path: str, count: int) -> list[int]:
    return [httpx.get(vertex.url + path).status_code for _ in range(count)]


@pytest.mark.stack
def test_seeded_error_rates_are_reproducible(vertex: Running) -> None:
    """The same seed gives the same sequence of injected 429s, with Vertex's error JSON."""
    rule = {"method": "ListModels", "rate": 0.5, "code": 429}
    set_faults(vertex, rules=[rule], seed=7)
    first = statuses(vertex, f"{V1}/models", 20)
    set_faults(vertex, rules=[rule], seed=7)
    second = statuses(vertex, f"{V1}/models", 20)
    assert first == second and set(first) == {200, 429}
    assert statuses(vertex, f"{V1}/endpoints", 5) == [200] * 5

    set_faults(vertex, rules=[{"method": "*Endpoints", "rate": 1.0, "code": 503}])
    error = httpx.get(f"{vertex.url}{V1}/endpoints").json()["error"]
    assert error == {"code": 503, "message": error["message"], "status": "UNAVAILABLE"}


@pytest.mark.stack
def test_injected_errors_reach_the_gapic_client_as_retryable_exceptions(vertex: Running) -> None:
    """A 503 injected on GetEndpoint surfaces in aiplatform_v1 as ServiceUnavailable, a 500 as InternalServerError."""
    from google.api_core.client_options import ClientOptions
    from google.api_core.exceptions import InternalServerError, ServiceUnavailable
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1 as v1

    client = v1.EndpointServiceClient(
        client_options=ClientOptions(api_endpoint=vertex.url),
        transport="rest",
        credentials=AnonymousCredentials(),
    )
    name = f"{V1.removeprefix('/v1/')}/endpoints/none"
    set_faults(vertex, rules=[{"method": "GetEndpoint", "rate": 1.0, "code": 503}])
    with pytest.raises(ServiceUnavailable):
        client.get_endpoint(name=name, retry=None)
    set_faults(vertex, rules=[{"method": "GetEndpoint", "rate": 1.0, "code": 500}])
    with pytest.raises(InternalServerError):
        client.get_endpoint(name=name, retry=None)


@pytest.mark.stack
def test_added_latency_applies_to_the_named_method_only(vertex: Running) -> None:
    """Latency set for ListEndpoints delays it and leaves other methods fast."""
    set_faults(vertex, latencyMs={"ListEndpoints": 300})
    started = time.monotonic()
    vertex.call("GET", f"{V1}/endpoints")
    slow = time.monotonic() - started
    started = time.monotonic()
    vertex.call("GET", f"{V1}/models")
    assert slow >= 0.3 > time.monotonic() - started


@pytest.mark.stack
def test_stockout_fails_accelerator_deploys_only(vertex: Running) -> None:
    """In stockout mode a deploy asking for a GPU fails with RESOURCE_EXHAUSTED; a CPU deploy succeeds."""
    set_faults(vertex, stockout=True)
    model, endpoint = vertex.echo_model("stockout")
    failed = vertex.wait_operation(vertex.start_deploy(model, endpoint, accelerator=True))
    assert failed["error"]["code"] == 8 and "stockout" in failed["error"]["message"]
    assert "NVIDIA_TESLA_T4" in failed["error"]["message"]
    worked = vertex.wait_operation(vertex.start_deploy(model, endpoint))
    assert "response" in worked


def _deploy_on(vertex: Running, model: str, endpoint: str, machine: dict[str, Any]) -> Any:
    body = {
        "deployedModel": {
            "model": model,
            "dedicatedResources": {"machineSpec": machine, "minReplicaCount": 1},
        }
    }
    return vertex.wait_operation(
        vertex.call("POST", f"/v1/{endpoint}:deployModel", json=body)["name"]
    )


@pytest.mark.stack
def test_a_stockout_can_name_accelerators_and_regions(vertex: Running) -> None:
    """A stockout of NVIDIA_TESLA_T4 (and of every accelerator in another region) fails T4 deploys only: L4 deploys and CPU deploys here go through."""
    set_faults(vertex, stockout=["NVIDIA_TESLA_T4", "*@europe-west4"])
    model, endpoint = vertex.echo_model("stockout-some")
    t4 = {
        "machineType": "n1-standard-4",
        "acceleratorType": "NVIDIA_TESLA_T4",
        "acceleratorCount": 1,
    }
    l4 = {"machineType": "g2-standard-12", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 1}
    failed = _deploy_on(vertex, model, endpoint, t4)
    assert failed["error"]["code"] == 8 and "NVIDIA_TESLA_T4" in failed["error"]["message"]
    assert "response" in _deploy_on(vertex, model, endpoint, l4)


def test_stockout_entries_parse_and_match() -> None:
    """Bare --stockout means every accelerator; a list names accelerators, ACCELERATOR@REGION or *@REGION; a bad entry is refused."""
    from local.vertex.faults import FaultConfig, parse_stockout

    assert parse_stockout(None) is False and parse_stockout(["*"]) is True
    entries = parse_stockout(["NVIDIA_L4,NVIDIA_TESLA_A100@us-central1", "*@europe-west4"])
    config = FaultConfig(stockout=entries)
    assert config.stocked_out("NVIDIA_L4", "asia-east1")
    assert config.stocked_out("NVIDIA_TESLA_A100", "us-central1")
    assert not config.stocked_out("NVIDIA_TESLA_A100", "us-east1")
    assert config.stocked_out("NVIDIA_H100_80GB", "europe-west4")
    assert not config.stocked_out(None, "europe-west4")  # CPU deploys never stock out
    assert FaultConfig(stockout=True).stocked_out("NVIDIA_L4", "x")
    with pytest.raises(ValueError, match="ACCELERATOR@REGION"):
        FaultConfig(stockout=["nvidia_l4"])
    from local.vertex.settings import from_args, parser

    flags = ["--stockout", "NVIDIA_L4,NVIDIA_TESLA_A100", "--stockout", "*@us-east1"]
    assert from_args(parser().parse_args(flags), {}).faults.stockout == [
        "NVIDIA_L4",
        "NVIDIA_TESLA_A100",
        "*@us-east1",
    ]
    assert from_args(parser().parse_args(["--stockout"]), {}).faults.stockout is True
    assert from_args(parser().parse_args([]), {}).faults.stockout is False


@pytest.mark.stack
def test_slow_deploys_stay_pending_for_the_delay(vertex: Running) -> None:
    """With a deploy delay the operation stays undone for that long, then finishes."""
    set_faults(vertex, deployDelayS=1.0)
    model, endpoint = vertex.echo_model("slow")
    started = time.monotonic()
    name = vertex.start_deploy(model, endpoint)
    pending = vertex.call("GET", f"/v1/{name}")
    assert pending["done"] is False
    assert pending["metadata"]["deploymentStage"] == "ADDING_NODES_TO_CLUSTER"
    assert "response" in vertex.wait_operation(name)
    assert time.monotonic() - started >= 1.0


@pytest.mark.stack
def test_a_bad_fault_configuration_is_refused(vertex: Running) -> None:
    """An unsupported code, an unknown field or a method name that matches nothing is INVALID_ARGUMENT."""
    configs = (
        {"rules": [{"rate": 0.5, "code": 418}]},
        {"stockOut": True},
        {"rules": [{"method": "DeployModels", "rate": 0.5}]},
        {"latencyMs": {"Nothing*": 5}},
    )
    for config in configs:
        response = httpx.put(f"{vertex.url}/emulator/faults", json=config)
        assert response.status_code == 400
        assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


@pytest.mark.stack
def test_flags_set_faults_and_the_deploy_timeout(tmp_path: Path) -> None:
    """--fault applies from the start (predict fails 500); a server slower than deploymentTimeout never becomes ready."""
    running = launch(tmp_path, "--fault", "Predict=1.0:500")
    try:
        assert running.call("GET", "/emulator/faults")["rules"] == [
            {"method": "Predict", "rate": 1.0, "code": 500}
        ]
        model, endpoint = running.echo_model("late", ["--start-delay", "10"])
        spec = running.call("GET", f"/v1/{model}")["containerSpec"]
        body = {
            "modelId": "late-1s",
            "model": {"displayName": "late", "containerSpec": {**spec, "deploymentTimeout": "1s"}},
        }
        running.call("POST", f"{V1}/models:upload", json=body)
        model = model.replace("/late", "/late-1s")
        failed = running.wait_operation(running.start_deploy(model, endpoint))
        assert failed["error"]["code"] == 9 and "within 1s" in failed["error"]["message"]
        response = httpx.post(f"{running.url}/v1/{endpoint}:predict", json={"instances": [1]})
        assert response.status_code == 500 and response.json()["error"]["status"] == "INTERNAL"
    finally:
        stop(running.child)
