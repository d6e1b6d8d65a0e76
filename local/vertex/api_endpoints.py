"""REST routes of endpoints (EndpointService), shaped as Vertex AI v1."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request

from local.vertex import listing, naming
from local.vertex.app import body_object, emulator, fault, page_size, parse
from local.vertex.resources import (
    DeployModelRequest,
    Endpoint,
    MutateDeployedModelRequest,
    UndeployModelRequest,
)

router = APIRouter()
LOCATION = "/v1/projects/{project}/locations/{location}"
ENDPOINT = LOCATION + "/endpoints/{endpoint}"


def _name(project: str, location: str, endpoint: str) -> str:
    return f"{naming.location(project, location)}/endpoints/{endpoint}"


@router.post(LOCATION + "/endpoints", dependencies=[Depends(fault("CreateEndpoint"))])
async def create_endpoint(request: Request, project: str, location: str) -> dict[str, Any]:
    body = await parse(request, Endpoint)
    endpoint_id = request.query_params.get("endpointId") or None
    operation = emulator(request).endpoints.create(
        naming.location(project, location), endpoint_id, body
    )
    return operation.wire()


@router.get(LOCATION + "/endpoints", dependencies=[Depends(fault("ListEndpoints"))])
async def list_endpoints(request: Request, project: str, location: str) -> dict[str, Any]:
    params = request.query_params
    items = emulator(request).endpoints.find(
        naming.location(project, location), params.get("filter", "")
    )
    chunk, token = listing.page(items, page_size(request), params.get("pageToken"))
    answer: dict[str, Any] = {"endpoints": [e.wire() for e in chunk]}
    if token:
        answer["nextPageToken"] = token
    return answer


@router.post(ENDPOINT + ":deployModel", dependencies=[Depends(fault("DeployModel"))])
async def deploy_model(
    request: Request, project: str, location: str, endpoint: str
) -> dict[str, Any]:
    body = await parse(request, DeployModelRequest)
    return emulator(request).rollout.deploy(_name(project, location, endpoint), body).wire()


@router.post(ENDPOINT + ":undeployModel", dependencies=[Depends(fault("UndeployModel"))])
async def undeploy_model(
    request: Request, project: str, location: str, endpoint: str
) -> dict[str, Any]:
    body = await parse(request, UndeployModelRequest)
    return emulator(request).rollout.undeploy(_name(project, location, endpoint), body).wire()


@router.post(
    ENDPOINT + ":mutateDeployedModel", dependencies=[Depends(fault("MutateDeployedModel"))]
)
async def mutate_deployed_model(
    request: Request, project: str, location: str, endpoint: str
) -> dict[str, Any]:
    body = await parse(request, MutateDeployedModelRequest)
    return emulator(request).rollout.mutate(_name(project, location, endpoint), body).wire()


@router.get(ENDPOINT, dependencies=[Depends(fault("GetEndpoint"))])
async def get_endpoint(
    request: Request, project: str, location: str, endpoint: str
) -> dict[str, Any]:
    return emulator(request).endpoints.get(_name(project, location, endpoint)).wire()


@router.patch(ENDPOINT, dependencies=[Depends(fault("UpdateEndpoint"))])
async def update_endpoint(
    request: Request, project: str, location: str, endpoint: str
) -> dict[str, Any]:
    patch = await body_object(request)
    paths = naming.mask_paths(request.query_params.get("updateMask"))
    return (
        emulator(request).endpoints.update(_name(project, location, endpoint), patch, paths).wire()
    )


@router.delete(ENDPOINT, dependencies=[Depends(fault("DeleteEndpoint"))])
async def delete_endpoint(
    request: Request, project: str, location: str, endpoint: str
) -> dict[str, Any]:
    return emulator(request).endpoints.delete(_name(project, location, endpoint)).wire()


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
