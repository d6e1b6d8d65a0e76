"""Google's SDKs unchanged against the faithful emulator: aiplatform's deploy and undeploy_all, GAPIC operations over REST."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.names import PROJECT

from local.processes import stop
from local.vertex.testing import ECHO_IMAGE, Running, launch

LOCATION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
FAITHFUL = ("--fidelity", "faithful", "--time-scale", "0.005")


@pytest.fixture(scope="module")
def vertex(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = launch(tmp_path_factory.mktemp("vertex-faithful-sdk"), *FAITHFUL)
    try:
        yield running
    finally:
        stop(running.child)


def gapic(url: str) -> tuple[Any, Any]:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1 as v1

    kwargs: dict[str, Any] = {
        "client_options": ClientOptions(api_endpoint=url),
        "transport": "rest",
        "credentials": AnonymousCredentials(),
    }
    return v1.ModelServiceClient(**kwargs), v1.EndpointServiceClient(**kwargs)


@pytest.mark.stack
def test_sdk_model_deploy_and_endpoint_undeploy_all_run_unchanged(vertex: Running) -> None:
    """Model.deploy twice (traffic moved to the second) then Endpoint.undeploy_all, lowest traffic first, waiting each."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    aiplatform.init(
        project=PROJECT,
        location=LOCATION,
        api_endpoint=vertex.url,
        api_transport="rest",
        credentials=AnonymousCredentials(),
    )
    model = aiplatform.Model.upload(
        display_name="faithful-sdk",
        serving_container_image_uri=ECHO_IMAGE,
        serving_container_health_probe_period_seconds=5,
        serving_container_health_probe_timeout_seconds=10,
    )
    endpoint = aiplatform.Endpoint.create(display_name="faithful-sdk")
    model.deploy(endpoint=endpoint, machine_type="n1-standard-4", min_replica_count=1)
    model.deploy(
        endpoint=endpoint, machine_type="n1-standard-4", min_replica_count=1, traffic_percentage=70
    )
    endpoint.sync_gca_resource() if hasattr(endpoint, "sync_gca_resource") else None
    split = dict(aiplatform.Endpoint(endpoint.resource_name).gca_resource.traffic_split)
    assert sorted(split.values()) == [30, 70]
    assert endpoint.predict(instances=[1]).predictions
    endpoint.undeploy_all()
    after = aiplatform.Endpoint(endpoint.resource_name)
    assert after.list_models() == [] and dict(after.gca_resource.traffic_split) == {}


@pytest.mark.stack
def test_sdk_upload_with_an_inverted_probe_is_refused(vertex: Running) -> None:
    """Model.upload with a health probe period above its timeout fails with 400 BadRequest."""
    from google.api_core import exceptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    aiplatform.init(
        project=PROJECT,
        location=LOCATION,
        api_endpoint=vertex.url,
        api_transport="rest",
        credentials=AnonymousCredentials(),
    )
    with pytest.raises(exceptions.BadRequest, match="period_seconds"):
        aiplatform.Model.upload(
            display_name="inverted",
            serving_container_image_uri=ECHO_IMAGE,
            serving_container_health_probe_period_seconds=60,
            serving_container_health_probe_timeout_seconds=10,
        )


@pytest.mark.stack
def test_gapic_lists_and_cancels_operations_and_undeploys_with_a_split(vertex: Running) -> None:
    """GAPIC list_operations shows a running deploy, cancel_operation ends it CANCELLED, undeploy_model moves traffic."""
    from google.cloud import aiplatform_v1 as v1

    models, endpoints = gapic(vertex.url)
    model = v1.Model(
        display_name="gapic", container_spec=v1.ModelContainerSpec(image_uri=ECHO_IMAGE)
    )
    uploaded = models.upload_model(
        request={"parent": PARENT, "model": model, "model_id": "gapic-faithful"}
    ).result(timeout=30)
    endpoint = (
        endpoints.create_endpoint(
            parent=PARENT, endpoint=v1.Endpoint(display_name="gapic"), endpoint_id="gapic-faithful"
        )
        .result(timeout=30)
        .name
    )
    deployed = v1.DeployedModel(
        model=uploaded.model,
        dedicated_resources=v1.DedicatedResources(
            machine_spec=v1.MachineSpec(machine_type="n1-standard-4"), min_replica_count=1
        ),
    )
    running = endpoints.deploy_model(endpoint=endpoint, deployed_model=deployed)
    listed = endpoints.list_operations(request={"name": endpoint})
    assert [o.done for o in listed.operations if o.name == running.operation.name] == [False]
    endpoints.cancel_operation(request={"name": running.operation.name})
    with pytest.raises(Exception, match="cancelled"):
        running.result(timeout=30)

    first = endpoints.deploy_model(endpoint=endpoint, deployed_model=deployed).result(timeout=60)
    second = endpoints.deploy_model(
        endpoint=endpoint,
        deployed_model=deployed,
        traffic_split={"0": 100, first.deployed_model.id: 0},
    ).result(timeout=60)
    ids = (first.deployed_model.id, second.deployed_model.id)
    with pytest.raises(Exception, match="traffic"):
        endpoints.undeploy_model(endpoint=endpoint, deployed_model_id=ids[1]).result(timeout=30)
    endpoints.undeploy_model(
        endpoint=endpoint, deployed_model_id=ids[1], traffic_split={ids[0]: 100}
    ).result(timeout=30)
    after = endpoints.get_endpoint(name=endpoint)
    assert [m.id for m in after.deployed_models] == [ids[0]] and dict(after.traffic_split) == {
        ids[0]: 100
    }
