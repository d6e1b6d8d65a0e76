"""Every bad request gets Vertex's status and a message that says what is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from local.processes import stop
from local.vertex.testing import PARENT, V1, Running, launch

MACHINE = {"machineSpec": {"machineType": "n1-standard-4"}, "minReplicaCount": 1}


@pytest.fixture(scope="module")
def vertex(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = launch(tmp_path_factory.mktemp("vertex-errors"))
    running.echo_model("known")
    try:
        yield running
    finally:
        stop(running.child)


CASES: list[tuple[str, str, str, Any, int, str, str]] = [
    ("upload without a model", "POST", f"{V1}/models:upload", {}, 400, "INVALID_ARGUMENT", "model"),
    (
        "upload without a display name",
        "POST",
        f"{V1}/models:upload",
        {"model": {}},
        400,
        "INVALID_ARGUMENT",
        "display_name",
    ),
    (
        "upload under a missing parent",
        "POST",
        f"{V1}/models:upload",
        {"parentModel": f"{PARENT}/models/none", "model": {"displayName": "x"}},
        404,
        "NOT_FOUND",
        "models/none",
    ),
    (
        "upload an existing model id",
        "POST",
        f"{V1}/models:upload",
        {"modelId": "known", "model": {"displayName": "x"}},
        409,
        "ALREADY_EXISTS",
        "already exists",
    ),
    (
        "upload with a bad alias",
        "POST",
        f"{V1}/models:upload",
        {"model": {"displayName": "x", "versionAliases": ["9x"]}},
        400,
        "INVALID_ARGUMENT",
        "alias",
    ),
    (
        "upload with a bad label",
        "POST",
        f"{V1}/models:upload",
        {"model": {"displayName": "x", "labels": {"Bad": "x"}}},
        400,
        "INVALID_ARGUMENT",
        "label key",
    ),
    ("get a missing version", "GET", f"{V1}/models/known@7", None, 404, "NOT_FOUND", "known@7"),
    (
        "delete the default version",
        "DELETE",
        f"{V1}/models/known@1:deleteVersion",
        None,
        400,
        "FAILED_PRECONDITION",
        "default version",
    ),
    (
        "patch a model without a mask",
        "PATCH",
        f"{V1}/models/known",
        {"labels": {}},
        400,
        "INVALID_ARGUMENT",
        "update_mask",
    ),
    (
        "patch a field that cannot change",
        "PATCH",
        f"{V1}/models/known?updateMask=containerSpec",
        {},
        400,
        "INVALID_ARGUMENT",
        "cannot be updated",
    ),
    (
        "create an endpoint with a bad id",
        "POST",
        f"{V1}/endpoints?endpointId=-x",
        {"displayName": "x"},
        400,
        "INVALID_ARGUMENT",
        "endpoint_id",
    ),
    (
        "split traffic onto nothing",
        "PATCH",
        f"{V1}/endpoints/known?updateMask=trafficSplit",
        {"trafficSplit": {"1": 100}},
        400,
        "INVALID_ARGUMENT",
        "not the id",
    ),
    (
        "deploy to a missing endpoint",
        "POST",
        f"{V1}/endpoints/none:deployModel",
        {"deployedModel": {"model": f"{PARENT}/models/known", "dedicatedResources": MACHINE}},
        404,
        "NOT_FOUND",
        "endpoints/none",
    ),
    (
        "deploy a missing model",
        "POST",
        f"{V1}/endpoints/known:deployModel",
        {"deployedModel": {"model": f"{PARENT}/models/none", "dedicatedResources": MACHINE}},
        404,
        "NOT_FOUND",
        "models/none",
    ),
    (
        "deploy with an unknown accelerator",
        "POST",
        f"{V1}/endpoints/known:deployModel",
        {
            "deployedModel": {
                "model": f"{PARENT}/models/known",
                "dedicatedResources": {
                    **MACHINE,
                    "machineSpec": {
                        "machineType": "n1-standard-4",
                        "acceleratorType": "NVIDIA_NOPE",
                    },
                },
            }
        },
        400,
        "INVALID_ARGUMENT",
        "acceleratorType",
    ),
    (
        "deploy with max below min",
        "POST",
        f"{V1}/endpoints/known:deployModel",
        {
            "deployedModel": {
                "model": f"{PARENT}/models/known",
                "dedicatedResources": {**MACHINE, "maxReplicaCount": 2, "minReplicaCount": 3},
            }
        },
        400,
        "INVALID_ARGUMENT",
        "max_replica_count",
    ),
    (
        "deploy with a bad id",
        "POST",
        f"{V1}/endpoints/known:deployModel",
        {
            "deployedModel": {
                "id": "abc",
                "model": f"{PARENT}/models/known",
                "dedicatedResources": MACHINE,
            }
        },
        400,
        "INVALID_ARGUMENT",
        "deployed model id",
    ),
    (
        "undeploy an unknown deployed model",
        "POST",
        f"{V1}/endpoints/known:undeployModel",
        {"deployedModelId": "42"},
        404,
        "NOT_FOUND",
        "deployedModels/42",
    ),
    (
        "mutate without a mask",
        "POST",
        f"{V1}/endpoints/known:mutateDeployedModel",
        {"deployedModel": {"id": "42"}},
        400,
        "INVALID_ARGUMENT",
        "update_mask",
    ),
    (
        "predict without instances",
        "POST",
        f"{V1}/endpoints/known:predict",
        {"inputs": []},
        400,
        "INVALID_ARGUMENT",
        "instances",
    ),
    (
        "predict on an endpoint with nothing deployed",
        "POST",
        f"{V1}/endpoints/known:rawPredict",
        {"prompt": "x"},
        400,
        "FAILED_PRECONDITION",
        "no deployed model",
    ),
    (
        "an unknown operation",
        "GET",
        f"/ui/{PARENT}/operations/123",
        None,
        404,
        "NOT_FOUND",
        "operations/123",
    ),
    (
        "a path the emulator does not serve",
        "GET",
        f"{V1}/datasets",
        None,
        404,
        "NOT_FOUND",
        "does not serve",
    ),
]


@pytest.mark.stack
@pytest.mark.parametrize(
    ("what", "method", "path", "body", "code", "status", "fragment"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_bad_requests_get_vertex_statuses(
    vertex: Running,
    what: str,
    method: str,
    path: str,
    body: Any,
    code: int,
    status: str,
    fragment: str,
) -> None:
    """The answer carries the HTTP code, the canonical status and a message naming the problem."""
    response = httpx.request(method, vertex.url + path, json=body)
    assert response.status_code == code, (what, response.text)
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (code, status)
    assert fragment in error["message"], error["message"]
