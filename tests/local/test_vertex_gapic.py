"""The aiplatform_v1 GAPIC clients over REST against the emulator: registry, endpoints, traffic rules."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from support.names import PROJECT

from local.processes import stop
from local.vertex.testing import ECHO_IMAGE, Running, launch

LOCATION = "us-central1"

PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def vertex(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = launch(tmp_path_factory.mktemp("vertex"))
    try:
        yield running
    finally:
        stop(running.child)


def clients(url: str) -> tuple[Any, Any, Any]:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1 as v1

    options = ClientOptions(api_endpoint=url)
    kwargs: dict[str, Any] = {
        "client_options": options,
        "transport": "rest",
        "credentials": AnonymousCredentials(),
    }
    return (
        v1.ModelServiceClient(**kwargs),
        v1.EndpointServiceClient(**kwargs),
        v1.PredictionServiceClient(**kwargs),
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def upload(models: Any, model_id: str, parent_model: str = "", **fields: Any) -> str:
    from google.cloud import aiplatform_v1 as v1

    model = v1.Model(
        display_name=fields.pop("display_name", model_id),
        container_spec=v1.ModelContainerSpec(
            image_uri=ECHO_IMAGE, args=["--flag=$(AIP_HTTP_PORT)"]
        ),
        artifact_uri=f"gs://modeldrop-weights/models/{model_id}/v1",
        **fields,
    )
    request: dict[str, Any] = {"parent": PARENT, "model": model}
    if parent_model:
        request["parent_model"] = parent_model
    else:
        request["model_id"] = model_id
    operation = models.upload_model(request=request)
    response = operation.result(timeout=30)
    return f"{response.model}@{response.model_version_id}"


def create_endpoint(endpoints: Any, endpoint_id: str, labels: dict[str, str] | None = None) -> str:
    from google.cloud import aiplatform_v1 as v1

    operation = endpoints.create_endpoint(
        parent=PARENT,
        endpoint=v1.Endpoint(display_name=endpoint_id, labels=labels or {}),
        endpoint_id=endpoint_id,
    )
    return str(operation.result(timeout=30).name)


def deploy(endpoints: Any, endpoint: str, model: str, split: dict[str, int] | None = None) -> str:
    from google.cloud import aiplatform_v1 as v1

    deployed = v1.DeployedModel(
        model=model,
        dedicated_resources=v1.DedicatedResources(
            machine_spec=v1.MachineSpec(
                machine_type="g2-standard-8", accelerator_type="NVIDIA_L4", accelerator_count=1
            ),
            min_replica_count=1,
        ),
    )
    operation = endpoints.deploy_model(
        endpoint=endpoint, deployed_model=deployed, traffic_split=split or {}
    )
    return str(operation.result(timeout=60).deployed_model.id)


@pytest.mark.stack
def test_versions_aliases_and_default_version(vertex: Running) -> None:
    """New versions go under parentModel; @version, @alias and the default version each resolve."""
    models, _, _ = clients(vertex.url)
    model_id = unique("gemma")
    first = upload(models, model_id, labels={"managed-by": "modeldrop"})
    name = first.split("@")[0]
    second = upload(models, model_id, parent_model=name, version_aliases=["candidate"])
    third = upload(models, model_id, parent_model=name, version_aliases=["candidate", "default"])

    assert (first, second, third) == (f"{name}@1", f"{name}@2", f"{name}@3")
    assert models.get_model(name=f"{name}@2").version_id == "2"
    assert models.get_model(name=f"{name}@candidate").version_id == "3"
    assert models.get_model(name=name).version_id == "3"
    assert models.get_model(name=f"{name}@1").version_aliases == []
    versions = models.list_model_versions(name=name)
    assert [v.version_id for v in versions] == ["1", "2", "3"]
    merged = models.merge_version_aliases(
        name=f"{name}@1", version_aliases=["candidate", "-nothing"]
    )
    assert list(merged.version_aliases) == ["candidate"]
    assert list(models.get_model(name=f"{name}@3").version_aliases) == ["default"]
    assert (
        models.get_model(name=name).supported_deployment_resources_types[0].name
        == "DEDICATED_RESOURCES"
    )


@pytest.mark.stack
def test_list_models_filters_labels_and_pages(vertex: Running) -> None:
    """Listing models honours a labels filter and walks every page through nextPageToken."""
    models, _, _ = clients(vertex.url)
    tag = unique("batch")
    for _ in range(5):
        upload(models, unique("m"), labels={"batch": tag})
    pager = models.list_models(
        request={"parent": PARENT, "filter": f"labels.batch={tag}", "page_size": 2}
    )
    pages = list(pager.pages)
    assert [len(p.models) for p in pages] == [2, 2, 1]
    assert all(m.labels["batch"] == tag for p in pages for m in p.models)


@pytest.mark.stack
def test_model_labels_update_and_missing_model(vertex: Running) -> None:
    """Patching labels with an update mask changes them; an unknown model is NOT_FOUND."""
    from google.api_core.exceptions import NotFound
    from google.cloud import aiplatform_v1 as v1

    models, _, _ = clients(vertex.url)
    name = upload(models, unique("labelled")).split("@")[0]
    updated = models.update_model(
        model=v1.Model(name=name, labels={"team": "ml"}), update_mask={"paths": ["labels"]}
    )
    assert dict(updated.labels) == {"team": "ml"}
    assert dict(models.get_model(name=name).labels) == {"team": "ml"}
    with pytest.raises(NotFound, match="not found"):
        models.get_model(name=f"{PARENT}/models/no-such-model")


@pytest.mark.stack
def test_endpoints_create_list_filter_and_etag(vertex: Running) -> None:
    """Endpoints take their id, list by label across pages, and refuse an update with a stale etag."""
    from google.api_core.exceptions import Conflict
    from google.cloud import aiplatform_v1 as v1

    _, endpoints, _ = clients(vertex.url)
    tag = unique("sweep")
    names = [
        create_endpoint(endpoints, unique("ep"), {"managed-by": "modeldrop", "t": tag})
        for _ in range(3)
    ]
    create_endpoint(endpoints, unique("ep"), {"t": tag})
    with pytest.raises(Conflict, match="already exists"):
        create_endpoint(endpoints, names[0].rsplit("/", 1)[1])

    found = endpoints.list_endpoints(
        request={
            "parent": PARENT,
            "filter": f"labels.managed-by=modeldrop AND labels.t={tag}",
            "page_size": 2,
        }
    )
    assert sorted(e.name for e in found) == sorted(names)

    current = endpoints.get_endpoint(name=names[0])
    relabelled = endpoints.update_endpoint(
        endpoint=v1.Endpoint(name=names[0], labels={"t": "new"}, etag=current.etag),
        update_mask={"paths": ["labels"]},
    )
    assert dict(relabelled.labels) == {"t": "new"} and relabelled.etag != current.etag
    with pytest.raises(Conflict, match="etag"):
        endpoints.update_endpoint(
            endpoint=v1.Endpoint(name=names[0], labels={"t": "old"}, etag=current.etag),
            update_mask={"paths": ["labels"]},
        )


@pytest.mark.stack
def test_traffic_split_rules_across_deploy_undeploy_and_mutate(vertex: Running) -> None:
    """Deploys fill the "0" key, undeploying a model that still has traffic is refused, splits re-route."""
    from google.api_core.exceptions import BadRequest
    from google.cloud import aiplatform_v1 as v1

    models, endpoints, predictions = clients(vertex.url)
    model = upload(models, unique("split"))
    endpoint = create_endpoint(endpoints, unique("split"))
    first = deploy(endpoints, endpoint, model)
    assert dict(endpoints.get_endpoint(name=endpoint).traffic_split) == {first: 100}

    with pytest.raises(BadRequest, match="add up to 100"):
        deploy(endpoints, endpoint, model, {"0": 30, first: 30})
    second = deploy(endpoints, endpoint, model, {"0": 20, first: 80})
    assert dict(endpoints.get_endpoint(name=endpoint).traffic_split) == {first: 80, second: 20}

    served = {
        predictions.predict(endpoint=endpoint, instances=[i]).deployed_model_id for i in range(30)
    }
    assert served == {first, second}

    with pytest.raises(BadRequest, match="has 80% of the endpoint's traffic"):
        endpoints.undeploy_model(endpoint=endpoint, deployed_model_id=first).result(timeout=30)
    with pytest.raises(BadRequest, match="undeploy them before deleting"):
        endpoints.delete_endpoint(name=endpoint).result(timeout=30)
    endpoints.undeploy_model(
        endpoint=endpoint, deployed_model_id=first, traffic_split={second: 100}
    ).result(timeout=30)
    assert dict(endpoints.get_endpoint(name=endpoint).traffic_split) == {second: 100}

    mutated = endpoints.mutate_deployed_model(
        endpoint=endpoint,
        deployed_model=v1.DeployedModel(
            id=second,
            dedicated_resources=v1.DedicatedResources(min_replica_count=2, max_replica_count=3),
        ),
        update_mask={
            "paths": [
                "dedicated_resources.min_replica_count",
                "dedicated_resources.max_replica_count",
            ]
        },
    ).result(timeout=30)
    resources = mutated.deployed_model.dedicated_resources
    assert (resources.min_replica_count, resources.max_replica_count) == (2, 3)
    assert resources.machine_spec.accelerator_type.name == "NVIDIA_L4"

    with pytest.raises(BadRequest, match="deployed or being deployed"):
        models.delete_model(name=model.split("@")[0]).result(timeout=30)
    endpoints.undeploy_model(endpoint=endpoint, deployed_model_id=second).result(timeout=30)
    assert dict(endpoints.get_endpoint(name=endpoint).traffic_split) == {}
    endpoints.delete_endpoint(name=endpoint).result(timeout=30)
    models.delete_model(name=model.split("@")[0]).result(timeout=30)


@pytest.mark.stack
def test_bad_deploy_requests_are_refused_with_reasons(vertex: Running) -> None:
    """A deploy without resources, with a mismatched accelerator or an unmapped image is refused at once."""
    from google.api_core.exceptions import BadRequest
    from google.cloud import aiplatform_v1 as v1

    models, endpoints, _ = clients(vertex.url)
    model = upload(models, unique("bad"))
    endpoint = create_endpoint(endpoints, unique("bad"))
    cases = {
        "dedicated_resources is required": v1.DeployedModel(model=model),
        "requires accelerator NVIDIA_L4": v1.DeployedModel(
            model=model,
            dedicated_resources=v1.DedicatedResources(
                machine_spec=v1.MachineSpec(machine_type="g2-standard-8"), min_replica_count=1
            ),
        ),
        "min_replica_count must be at least 1": v1.DeployedModel(
            model=model,
            dedicated_resources=v1.DedicatedResources(
                machine_spec=v1.MachineSpec(machine_type="n1-standard-4")
            ),
        ),
    }
    for reason, deployed in cases.items():
        with pytest.raises(BadRequest, match=reason):
            endpoints.deploy_model(endpoint=endpoint, deployed_model=deployed)
    unmapped = models.upload_model(
        parent=PARENT,
        model=v1.Model(
            display_name="x", container_spec=v1.ModelContainerSpec(image_uri="example.com/other:1")
        ),
    ).result(timeout=30)
    with pytest.raises(BadRequest, match="--image-map"):
        deploy(endpoints, endpoint, unmapped.model)
    assert list(endpoints.get_endpoint(name=endpoint).deployed_models) == []
