"""The high-level google-cloud-aiplatform SDK against the emulator, as a user's script would use it.

(The SDK's Endpoint.raw_predict ignores api_endpoint and always calls the regional Google host, so
rawPredict is tested over plain HTTP in test_vertex_deploy.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.names import PROJECT

from local.processes import stop
from local.vertex.testing import ECHO_IMAGE, Running, launch

LOCATION = "us-central1"


@pytest.fixture(scope="module")
def aiplatform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The SDK, initialised against a fresh emulator over REST with anonymous credentials."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform as sdk

    running: Running = launch(tmp_path_factory.mktemp("vertex-sdk"))
    sdk.init(
        project=PROJECT,
        location=LOCATION,
        api_endpoint=running.url,
        api_transport="rest",
        credentials=AnonymousCredentials(),
    )
    try:
        yield sdk
    finally:
        stop(running.child)


@pytest.mark.stack
def test_upload_create_deploy_predict_undeploy(aiplatform: Any) -> None:
    """Model.upload, Endpoint.create, Model.deploy, Endpoint.predict and Endpoint.undeploy all work."""
    model = aiplatform.Model.upload(
        display_name="gemma-tiny",
        serving_container_image_uri=ECHO_IMAGE,
        artifact_uri="gs://modeldrop-weights/models/gemma-tiny/v1",
        labels={"managed-by": "modeldrop"},
    )
    endpoint = aiplatform.Endpoint.create(
        display_name="gemma-tiny", labels={"managed-by": "modeldrop"}
    )
    model.deploy(
        endpoint=endpoint,
        machine_type="g2-standard-8",
        accelerator_type="NVIDIA_L4",
        accelerator_count=1,
        min_replica_count=1,
        max_replica_count=2,
    )
    deployed = endpoint.list_models()
    assert len(deployed) == 1
    assert deployed[0].dedicated_resources.max_replica_count == 2

    prediction = endpoint.predict(instances=[{"prompt": "hi"}])
    assert prediction.predictions == [{"echo": {"prompt": "hi"}, "deployedModelId": deployed[0].id}]
    assert prediction.deployed_model_id == deployed[0].id

    assert [
        e.resource_name for e in aiplatform.Endpoint.list(filter="labels.managed-by=modeldrop")
    ] == [endpoint.resource_name]
    endpoint.undeploy(deployed_model_id=deployed[0].id)
    assert endpoint.list_models() == []
    assert endpoint.gca_resource.traffic_split == {}


@pytest.mark.stack
def test_new_versions_under_a_parent_model(aiplatform: Any) -> None:
    """Model.upload with parent_model adds a version that becomes the default, the old one kept."""
    first = aiplatform.Model.upload(
        display_name="versioned", serving_container_image_uri=ECHO_IMAGE
    )
    second = aiplatform.Model.upload(
        display_name="versioned",
        serving_container_image_uri=ECHO_IMAGE,
        parent_model=first.resource_name,
        version_aliases=["candidate"],
    )
    assert second.resource_name == first.resource_name
    assert second.version_id == "2"
    registry = first.versioning_registry
    assert sorted(v.version_id for v in registry.list_versions()) == ["1", "2"]
    assert aiplatform.Model(f"{first.resource_name}@candidate").version_id == "2"
