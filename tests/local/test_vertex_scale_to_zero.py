"""v1beta1 scale-to-zero with the aiplatform_v1beta1 GAPIC clients over REST: 429 at zero, scale-up,
scale-down, limits, and the dedicated endpoint's own DNS its predictions must go to."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.names import PROJECT

from local.processes import stop
from local.vertex.testing import ECHO_IMAGE, Running, launch

LOCATION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
# 0.005: both 300 s periods take 1.5 s, a CPU deploy (and so a scale-up) of 600 s takes 3 s.
FAITHFUL = ("--fidelity", "faithful", "--time-scale", "0.005")
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def vertex(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = launch(tmp_path_factory.mktemp("vertex-stz"), *FAITHFUL)
    try:
        yield running
    finally:
        stop(running.child)


def clients(url: str) -> tuple[Any, Any, Any]:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1beta1 as v1beta1

    kwargs: dict[str, Any] = {
        "client_options": ClientOptions(api_endpoint=url),
        "transport": "rest",
        "credentials": AnonymousCredentials(),
    }
    return (
        v1beta1.ModelServiceClient(**kwargs),
        v1beta1.EndpointServiceClient(**kwargs),
        v1beta1.PredictionServiceClient(**kwargs),
    )


def model_and_endpoint(vertex: Running, dedicated: bool = True) -> tuple[str, str]:
    """An uploaded echo model and a (dedicated) endpoint, both through v1beta1 and past their operations."""
    from google.cloud import aiplatform_v1beta1 as v1beta1

    models, endpoints, _ = clients(vertex.url)
    suffix = f"stz-{next(_ids)}"
    model = v1beta1.Model(
        display_name=suffix, container_spec=v1beta1.ModelContainerSpec(image_uri=ECHO_IMAGE)
    )
    request = {"parent": PARENT, "model": model, "model_id": suffix}
    uploaded = models.upload_model(request=request).result(timeout=30)
    endpoint = v1beta1.Endpoint(display_name=suffix, dedicated_endpoint_enabled=dedicated)
    created = endpoints.create_endpoint(
        parent=PARENT, endpoint=endpoint, endpoint_id=suffix
    ).result(timeout=30)
    return uploaded.model, created.name


def zeroable(model: str, **resources: Any) -> Any:
    """A v1beta1 DeployedModel of `model` on n1-standard-4 with scale-to-zero resources."""
    from google.cloud import aiplatform_v1beta1 as v1beta1
    from google.protobuf import duration_pb2

    spec = v1beta1.DedicatedResources.ScaleToZeroSpec(
        min_scaleup_period=duration_pb2.Duration(seconds=resources.pop("min_scaleup_s", 300)),
        idle_scaledown_period=duration_pb2.Duration(seconds=resources.pop("idle_s", 300)),
    )
    dedicated = {
        "machine_spec": v1beta1.MachineSpec(machine_type="n1-standard-4"),
        "min_replica_count": 0,
        "max_replica_count": 1,
        "initial_replica_count": 1,
        "scale_to_zero_spec": spec,
        **resources,
    }
    return v1beta1.DeployedModel(
        model=model, dedicated_resources=v1beta1.DedicatedResources(**dedicated)
    )


def on_dns(endpoints: Any, endpoint: str) -> list[tuple[str, str]]:
    """The metadata that sends a GAPIC prediction to the endpoint's dedicated DNS: against Vertex
    a client is built with `api_endpoint=<dns>`; the emulator plays the DNS by the Host header."""
    dns = str(endpoints.get_endpoint(name=endpoint).dedicated_endpoint_dns)
    assert dns.startswith(endpoint.rsplit("/", 1)[-1] + f".{LOCATION}-")
    assert dns.endswith(".prediction.vertexai.goog")
    return [("host", dns)]


def available(endpoints: Any, endpoint: str) -> int:
    [deployed] = endpoints.get_endpoint(name=endpoint).deployed_models
    return int(deployed.status.available_replica_count)


@pytest.mark.stack
def test_a_model_at_zero_answers_429_scales_up_over_the_deploy_time_and_back_down(
    vertex: Running,
) -> None:
    """minReplicaCount 0: after idleScaledownPeriod it is at zero; a predict gets 429 and starts a scale-up of the modelled deploy time."""
    from google.api_core import exceptions

    _, endpoints, predictions = clients(vertex.url)
    model, endpoint = model_and_endpoint(vertex)
    # 1200 s periods (6 s scaled): the SDK's operation polling may return a second or more after
    # the deploy ended, and the 300 s minimum (1.5 s) could scale it to zero before the first predict.
    zero = zeroable(model, min_scaleup_s=1200, idle_s=1200)
    deployed = endpoints.deploy_model(endpoint=endpoint, deployed_model=zero).result(timeout=60)
    up_since = time.monotonic()
    resources = deployed.deployed_model.dedicated_resources
    assert resources.min_replica_count == 0 and resources.initial_replica_count == 1
    host = on_dns(endpoints, endpoint)
    assert predictions.predict(endpoint=endpoint, instances=[1], metadata=host).predictions

    deadline = time.monotonic() + 30
    while available(endpoints, endpoint) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert available(endpoints, endpoint) == 0
    # minScaleupPeriod and idleScaledownPeriod, 1200 s each from the deploy's end (6 s), which is
    # up to the SDK's polling interval before result() returned.
    assert time.monotonic() - up_since >= 4.5
    serving = vertex.call("GET", "/emulator/deployments")["deployments"]
    assert not [d for d in serving if d["endpoint"] == endpoint]

    started, answered = time.monotonic(), None  # before the request that starts the scale-up
    with pytest.raises(exceptions.TooManyRequests, match="not yet ready for inference"):
        predictions.predict(endpoint=endpoint, instances=[1], metadata=host)
    while answered is None and time.monotonic() - started < 30:
        try:
            answered = predictions.predict(endpoint=endpoint, instances=[1], metadata=host)
        except exceptions.TooManyRequests:
            time.sleep(0.2)
    assert answered is not None and answered.predictions
    assert time.monotonic() - started >= 3.0  # the modelled CPU deploy: 600 s x 0.005


def refusal(vertex: Running, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(vertex.url + path, json=body, timeout=30)
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


@pytest.mark.stack
def test_scale_to_zero_requests_are_refused_where_vertex_refuses_them(vertex: Running) -> None:
    """v1 takes no zero replicas nor v1beta1 fields; periods outside 5 min-8 h, initial > max, a shared or non-dedicated endpoint are refused."""
    from google.api_core import exceptions

    model, endpoint = model_and_endpoint(vertex)
    machine = {"machineType": "n1-standard-4"}
    base = {"machineSpec": machine, "minReplicaCount": 0, "maxReplicaCount": 1}
    stz = {**base, "initialReplicaCount": 1}

    def deploy(version: str, resources: dict[str, Any], on: str = endpoint) -> dict[str, Any]:
        body = {"deployedModel": {"model": model, "dedicatedResources": resources}}
        return refusal(vertex, f"/{version}/{on}:deployModel", body)

    assert "at least 1" in deploy("v1", base)["message"]
    assert (
        'Unknown name "initialReplicaCount"'
        in deploy("v1", {**stz, "minReplicaCount": 1})["message"]
    )
    short = {**stz, "scaleToZeroSpec": {"idleScaledownPeriod": "299s"}}
    assert "between 300s" in deploy("v1beta1", short)["message"]
    long = {**stz, "scaleToZeroSpec": {"minScaleupPeriod": "28801s"}}
    assert "between 300s" in deploy("v1beta1", long)["message"]
    assert "larger than 0" in deploy("v1beta1", base)["message"]
    assert "greater than max" in deploy("v1beta1", {**stz, "initialReplicaCount": 2})["message"]
    fixed = {**stz, "minReplicaCount": 1}
    assert "only be set when" in deploy("v1beta1", fixed)["message"]

    _, shared = model_and_endpoint(vertex, dedicated=False)
    error = deploy("v1beta1", stz, on=shared)
    assert error["status"] == "FAILED_PRECONDITION" and "dedicated endpoint" in error["message"]

    _, endpoints, _ = clients(vertex.url)
    endpoints.deploy_model(endpoint=endpoint, deployed_model=zeroable(model)).result(timeout=60)
    with pytest.raises(exceptions.BadRequest, match="only model on"):
        endpoints.deploy_model(endpoint=endpoint, deployed_model=zeroable(model))

    # The dedicated endpoint on the shared host: every prediction route refuses it, naming its DNS.
    [(_, dns)] = on_dns(endpoints, endpoint)
    assert not endpoints.get_endpoint(name=shared).dedicated_endpoint_dns
    for route in (
        ":predict",
        ":rawPredict",
        ":streamRawPredict",
        "/chat/completions",
        "/completions",
    ):
        error = refusal(vertex, f"/v1/{endpoint}{route}", {"instances": [1]})
        assert error["status"] == "FAILED_PRECONDITION" and f"https://{dns}" in error["message"]


@pytest.mark.stack
def test_mutating_min_replicas_to_one_stops_scaling_to_zero(vertex: Running) -> None:
    """mutateDeployedModel (v1beta1) may set minReplicaCount 1: the model then stays up past its idle period; initialReplicaCount is not mutable."""
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1beta1 as v1beta1

    _, endpoints, _ = clients(vertex.url)
    model, endpoint = model_and_endpoint(vertex)
    deployed = endpoints.deploy_model(endpoint=endpoint, deployed_model=zeroable(model)).result(
        timeout=60
    )
    dm_id = deployed.deployed_model.id
    with pytest.raises(exceptions.BadRequest, match="cannot be mutated"):
        endpoints.mutate_deployed_model(
            endpoint=endpoint,
            deployed_model=v1beta1.DeployedModel(
                id=dm_id, dedicated_resources=v1beta1.DedicatedResources(initial_replica_count=1)
            ),
            update_mask={"paths": ["dedicated_resources.initial_replica_count"]},
        )
    mutated = endpoints.mutate_deployed_model(
        endpoint=endpoint,
        deployed_model=v1beta1.DeployedModel(
            id=dm_id,
            dedicated_resources=v1beta1.DedicatedResources(
                min_replica_count=1, max_replica_count=1
            ),
        ),
        update_mask={"paths": ["dedicated_resources.min_replica_count"]},
    ).result(timeout=30)
    assert mutated.deployed_model.dedicated_resources.min_replica_count == 1
    time.sleep(2.0)  # past both 1.5 s periods
    assert available(endpoints, endpoint) == 1
