"""The emulator under the faithful preset over REST: strict requests, slow operations, in-flight state, cancel, labels, limits."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.processes import free_port, start, stop, wait_http
from local.vertex.testing import ECHO_IMAGE, PARENT, V1, Running, launch

# 0.005: a CPU deploy of 600 s takes 3 s, an undeploy 0.6 s, a mutate 1.5 s; endpoint creation
# and model deletes 1 s.
FAITHFUL = (
    "--fidelity",
    "faithful",
    "--time-scale",
    "0.005",
    "--rule",
    "duration.create_endpoint=200",
    "--rule",
    "duration.delete_model=200",
)
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def vertex(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = launch(tmp_path_factory.mktemp("vertex-faithful"), *FAITHFUL)
    try:
        yield running
    finally:
        stop(running.child)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def refused(vertex: Running, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """The error body of a call that must fail."""
    response = httpx.request(method, vertex.url + path, timeout=30, **kwargs)
    assert response.status_code >= 400, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == response.status_code
    return body


def ready_model(vertex: Running, prefix: str, args: list[str] | None = None) -> tuple[str, str]:
    """An uploaded echo model and an endpoint of the same id, both past their operations."""
    model_id = unique(prefix)
    spec = {"imageUri": ECHO_IMAGE, "args": args or []}
    body = {"modelId": model_id, "model": {"displayName": model_id, "containerSpec": spec}}
    vertex.wait_operation(vertex.call("POST", f"{V1}/models:upload", json=body)["name"])
    created = vertex.call(
        "POST", f"{V1}/endpoints", params={"endpointId": model_id}, json={"displayName": model_id}
    )
    vertex.wait_operation(created["name"])
    return f"{PARENT}/models/{model_id}", f"{PARENT}/endpoints/{model_id}"


@pytest.mark.stack
def test_strict_requests_are_refused_with_vertex_codes(vertex: Running) -> None:
    """Bad endpoint ids, long display names, inverted probes, wrong GPU families and bad splits are 400s."""
    assert (
        refused(
            vertex,
            "POST",
            f"{V1}/endpoints",
            params={"endpointId": "7b-chat"},
            json={"displayName": "x"},
        )["status"]
        == "INVALID_ARGUMENT"
    )
    assert (
        "128"
        in refused(vertex, "POST", f"{V1}/endpoints", json={"displayName": "x" * 129})["message"]
    )
    probe = {"httpGet": {"path": "/h"}, "periodSeconds": 30, "timeoutSeconds": 10}
    spec = {"imageUri": ECHO_IMAGE, "healthProbe": probe}
    error = refused(
        vertex,
        "POST",
        f"{V1}/models:upload",
        json={"model": {"displayName": "p", "containerSpec": spec}},
    )
    assert error["status"] == "INVALID_ARGUMENT" and "period_seconds" in error["message"]

    model, endpoint = ready_model(vertex, "strict")
    machine = {
        "machineType": "n1-standard-4",
        "acceleratorType": "NVIDIA_L4",
        "acceleratorCount": 1,
    }
    deployed = {
        "model": model,
        "dedicatedResources": {"machineSpec": machine, "minReplicaCount": 1},
    }
    error = refused(vertex, "POST", f"/v1/{endpoint}:deployModel", json={"deployedModel": deployed})
    assert "not supported for machine type" in error["message"]
    deployed["dedicatedResources"]["machineSpec"] = {"machineType": "n1-standard-4"}
    error = refused(
        vertex,
        "POST",
        f"/v1/{endpoint}:deployModel",
        json={"deployedModel": deployed, "trafficSplit": {"0": 90}},
    )
    assert "add up to 100" in error["message"]
    same = {**deployed, "id": "42"}
    vertex.wait_operation(
        vertex.call("POST", f"/v1/{endpoint}:deployModel", json={"deployedModel": same})["name"]
    )
    assert (
        refused(vertex, "POST", f"/v1/{endpoint}:deployModel", json={"deployedModel": same})[
            "status"
        ]
        == "ALREADY_EXISTS"
    )


@pytest.mark.stack
def test_endpoints_appear_when_their_create_operation_ends(vertex: Running) -> None:
    """A created endpoint is not visible (404) while its operation runs, then is."""
    endpoint_id = unique("later")
    created = vertex.call(
        "POST", f"{V1}/endpoints", params={"endpointId": endpoint_id}, json={"displayName": "later"}
    )
    assert not created["done"]
    assert refused(vertex, "GET", f"{V1}/endpoints/{endpoint_id}")["status"] == "NOT_FOUND"
    assert vertex.wait_operation(created["name"])["response"]["name"].endswith(endpoint_id)
    assert vertex.call("GET", f"{V1}/endpoints/{endpoint_id}")["displayName"] == "later"


@pytest.mark.stack
def test_undeploy_keeps_the_model_listed_with_its_traffic_until_the_operation_ends(
    vertex: Running,
) -> None:
    """During an undeploy the model and its traffic stay; a second change is refused; both go when it ends."""
    model, endpoint = ready_model(vertex, "inflight")
    started = time.monotonic()
    deploying = vertex.start_deploy(model, endpoint)
    assert vertex.call("GET", f"/ui/{deploying}")["metadata"]["deploymentStage"] in {
        "STARTING_DEPLOYMENT",
        "ADDING_NODES_TO_CLUSTER",
    }
    busy = refused(
        vertex,
        "POST",
        f"/v1/{endpoint}:deployModel",
        json={
            "deployedModel": {
                "model": model,
                "dedicatedResources": {
                    "machineSpec": {"machineType": "n1-standard-4"},
                    "minReplicaCount": 1,
                },
            }
        },
    )
    assert busy["status"] == "FAILED_PRECONDITION" and "in progress" in busy["message"]
    done = vertex.wait_operation(deploying)
    assert time.monotonic() - started >= 3.0  # 600 s x 0.005
    assert done["metadata"]["deploymentStage"] == "SUCCESSFULLY_DEPLOYED"
    dm_id = done["response"]["deployedModel"]["id"]

    undeploying = vertex.call(
        "POST", f"/v1/{endpoint}:undeployModel", json={"deployedModelId": dm_id}
    )["name"]
    during = vertex.call("GET", f"/v1/{endpoint}")
    assert [m["id"] for m in during["deployedModels"]] == [dm_id]
    assert during["trafficSplit"] == {dm_id: 100}
    again = refused(
        vertex, "POST", f"/v1/{endpoint}:undeployModel", json={"deployedModelId": dm_id}
    )
    assert again["status"] == "FAILED_PRECONDITION"
    vertex.wait_operation(undeploying)
    after = vertex.call("GET", f"/v1/{endpoint}")
    assert after.get("deployedModels", []) == [] and after.get("trafficSplit", {}) == {}


@pytest.mark.stack
def test_operations_are_listed_and_a_deploy_can_be_cancelled(vertex: Running) -> None:
    """An endpoint's operations are listed with their state; :cancel ends a deploy CANCELLED and stops its process."""
    model, endpoint = ready_model(vertex, "cancel")
    name = vertex.start_deploy(model, endpoint)
    listed = vertex.call("GET", f"/v1/{endpoint}/operations")["operations"]
    assert [o["done"] for o in listed if o["name"] == name] == [False]
    assert vertex.call("POST", f"/ui/{name}:cancel") == {}
    ended = vertex.wait_operation(name)
    assert ended["error"]["code"] == 1
    assert vertex.call("GET", f"/v1/{endpoint}").get("deployedModels", []) == []
    assert not [
        d
        for d in vertex.call("GET", "/emulator/deployments")["deployments"]
        if d["endpoint"] == endpoint
    ]
    assert vertex.call("POST", f"/ui/{name}:cancel") == {}  # a done operation stays as it ended
    assert vertex.wait_operation(name)["error"]["code"] == 1


@pytest.mark.stack
def test_model_deletes_are_operations_refused_while_deployed(vertex: Running) -> None:
    """DeleteModel: 400 FAILED_PRECONDITION while a version is deployed; after undeploy an operation that ends with the model gone."""
    model, endpoint = ready_model(vertex, "deleted")
    dm_id = vertex.deploy(model, endpoint)
    error = refused(vertex, "DELETE", f"/v1/{model}")
    assert error["status"] == "FAILED_PRECONDITION" and endpoint in error["message"]
    vertex.wait_operation(
        vertex.call("POST", f"/v1/{endpoint}:undeployModel", json={"deployedModelId": dm_id})[
            "name"
        ]
    )
    deleting = vertex.call("DELETE", f"/v1/{model}")
    assert not deleting["done"]
    assert deleting["metadata"]["@type"].endswith("v1.DeleteOperationMetadata")
    assert vertex.call("GET", f"/v1/{model}")["name"] == model  # readable until the end
    assert "being deleted" in refused(vertex, "DELETE", f"/v1/{model}")["message"]
    deployed = {
        "model": model,
        "dedicatedResources": {
            "machineSpec": {"machineType": "n1-standard-4"},
            "minReplicaCount": 1,
        },
    }
    again = refused(vertex, "POST", f"/v1/{endpoint}:deployModel", json={"deployedModel": deployed})
    assert "being deleted" in again["message"]
    done = vertex.wait_operation(deleting["name"])
    assert done["response"]["@type"] == "type.googleapis.com/google.protobuf.Empty"
    assert refused(vertex, "GET", f"/v1/{model}")["status"] == "NOT_FOUND"


@pytest.mark.stack
def test_model_and_version_labels_merge_on_read(vertex: Running) -> None:
    """Model labels (name without @) and version labels (name@v) are kept apart and merged when read."""
    model, _ = ready_model(vertex, "labels")
    path = f"/v1/{model}"
    vertex.call("PATCH", path, params={"updateMask": "labels"}, json={"labels": {"team": "a"}})
    vertex.call(
        "PATCH", f"{path}@1", params={"updateMask": "labels"}, json={"labels": {"stage": "b"}}
    )
    assert vertex.call("GET", path)["labels"] == {"team": "a", "stage": "b"}
    listed = vertex.call(
        "GET", f"{V1}/models", params={"filter": "labels.team=a AND labels.stage=b"}
    )
    assert [m["name"] for m in listed["models"]] == [model]
    error = refused(
        vertex,
        "PATCH",
        path,
        params={"updateMask": "versionDescription"},
        json={"versionDescription": "x"},
    )
    assert error["status"] == "FAILED_PRECONDITION"


@pytest.mark.stack
def test_predict_passes_client_errors_and_refuses_deep_or_oversize_bodies(vertex: Running) -> None:
    """A container's 413 stays a 413; deep JSON and bodies over 1.5 MB are 400s before the container."""
    model, endpoint = ready_model(vertex, "limits", args=["--max-body", "1000"])
    vertex.deploy(model, endpoint)
    url = f"/v1/{endpoint}:predict"
    big = {"instances": ["x" * 2000]}
    assert refused(vertex, "POST", url, json=big)["code"] == 413
    deep = b'{"instances": [' + b"[" * 5000 + b"]" * 5000 + b"]}"
    error = refused(vertex, "POST", url, content=deep, headers={"content-type": "application/json"})
    assert error["status"] == "INVALID_ARGUMENT" and "deeper" in error["message"]
    huge = {"instances": ["x" * 1_600_000]}
    assert "exceeds the limit" in refused(vertex, "POST", url, json=huge)["message"]
    assert (
        "exceeds the limit"
        in refused(vertex, "POST", f"/v1/{endpoint}:rawPredict", json=huge)["message"]
    )
    deep_create = b'{"displayName": "d", "labels": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert refused(vertex, "POST", f"{V1}/endpoints", content=deep_create)["code"] == 400


@pytest.mark.stack
def test_prediction_count_is_not_visible_before_its_sample_closes(vertex: Running) -> None:
    """Right after a prediction, timeSeries.list shows nothing yet: the 60 s sample and the delay come first."""
    model, endpoint = ready_model(vertex, "metrics")
    vertex.deploy(model, endpoint)
    sent = time.time()
    vertex.call("POST", f"/v1/{endpoint}:predict", json={"instances": [1]})
    params = {
        "filter": 'metric.type = "aiplatform.googleapis.com/prediction/online/prediction_count"'
        f' AND resource.labels.endpoint_id = "{endpoint.rsplit("/", 1)[-1]}"',
        "interval.startTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sent - 600)),
        "interval.endTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sent + 60)),
    }
    series = vertex.call("GET", f"/v3/projects/{PARENT.split('/')[1]}/timeSeries", params=params)
    sample_end = (int(sent) // 60 + 1) * 60
    if time.time() < sample_end:  # (a prediction in a sample's last second may show already)
        assert series["timeSeries"] == []


@pytest.mark.stack
def test_routes_counted_in_prediction_count_follow_the_rule(tmp_path: Path) -> None:
    """Faithful counts predict and rawPredict only, not chat completions (counted_routes); deploying_listed shows a deploying model."""
    running = launch(
        tmp_path, *FAITHFUL, "--rule", "metric_sampling=off", "--rule", "deploying_listed=on"
    )
    try:
        model, endpoint = ready_model(running, "routes")
        deploying = running.start_deploy(model, endpoint)
        [listed] = running.call("GET", f"/v1/{endpoint}")["deployedModels"]
        assert listed["status"].get("availableReplicaCount", 0) == 0
        dm_id = running.wait_operation(deploying)["response"]["deployedModel"]["id"]
        assert listed["id"] == dm_id
        running.call("POST", f"/v1/{endpoint}:predict", json={"instances": [1]})
        running.call("POST", f"/v1/{endpoint}:rawPredict", json={"prompt": "x"})
        running.call("POST", f"/v1/{endpoint}/chat/completions", json={"messages": []})
        params = {
            "filter": f'metric.type = "aiplatform.googleapis.com/prediction/online/prediction_count" AND metric.labels.deployed_model_id = "{dm_id}"',
            "interval.startTime": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600)
            ),
            "interval.endTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60)),
            "aggregation.perSeriesAligner": "ALIGN_DELTA",
            "aggregation.alignmentPeriod": "3600s",
        }
        series = running.call(
            "GET", f"/v3/projects/{PARENT.split('/')[1]}/timeSeries", params=params
        )["timeSeries"]
        assert sum(int(p["value"]["int64Value"]) for s in series for p in s["points"]) == 2
    finally:
        stop(running.child)


@pytest.mark.stack
def test_quota_is_refused_at_once_and_a_stockout_fails_the_operation(tmp_path: Path) -> None:
    """Over quota: 429 naming the quota metric at the request; stockout: the operation fails RESOURCE_EXHAUSTED later."""
    running = launch(tmp_path, *FAITHFUL, "--rule", "quota_gpus=NVIDIA_TESLA_T4:1", "--stockout")
    try:
        model, endpoint = ready_model(running, "capacity")
        machine = {
            "machineType": "n1-standard-4",
            "acceleratorType": "NVIDIA_TESLA_T4",
            "acceleratorCount": 2,
        }
        deployed = {
            "model": model,
            "dedicatedResources": {"machineSpec": machine, "minReplicaCount": 1},
        }
        error = refused(
            running, "POST", f"/v1/{endpoint}:deployModel", json={"deployedModel": deployed}
        )
        assert error["code"] == 429 and "quota metrics exceed" in error["message"]
        operation = running.wait_operation(running.start_deploy(model, endpoint, accelerator=True))
        assert (
            operation["error"]["code"] == 8 and "enough resources" in operation["error"]["message"]
        )
    finally:
        stop(running.child)


@pytest.mark.stack
def test_modeldrop_local_vertex_takes_the_documented_flags(tmp_path: Path) -> None:
    """`modeldrop local vertex --port P --data-dir D --fidelity faithful` serves, as the README writes it."""
    port = free_port()
    script = "import sys; from modeldrop.cli import main; sys.exit(main())"
    argv = [
        sys.executable,
        "-c",
        script,
        "local",
        "vertex",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "d"),
        "--fidelity",
        "faithful",
    ]
    child = start("cli-vertex", argv, tmp_path / "cli.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", child, timeout_s=60)
        answer = httpx.post(
            f"http://127.0.0.1:{port}{V1}/endpoints",
            params={"endpointId": "7b"},
            json={"displayName": "x"},
        )
        assert answer.status_code == 400  # faithful: a digit-first id holds digits only
        assert (tmp_path / "d").is_dir()
    finally:
        stop(child)
