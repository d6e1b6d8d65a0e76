"""REST routes of the Model Registry (ModelService), shaped as Vertex AI v1."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request

from local.vertex import listing, naming
from local.vertex.app import body_object, emulator, fault, page_size, parse
from local.vertex.errors import invalid
from local.vertex.resources import Model, UploadModelRequest

router = APIRouter()
LOCATION = "/v1/projects/{project}/locations/{location}"
MODEL = LOCATION + "/models/{model}"


def _name(project: str, location: str, model: str) -> str:
    return f"{naming.location(project, location)}/models/{model}"


def _page(request: Request, items: list[Model]) -> dict[str, Any]:
    params = request.query_params
    chunk, token = listing.page(items, page_size(request), params.get("pageToken"))
    answer: dict[str, Any] = {"models": [m.wire() for m in chunk]}
    if token:
        answer["nextPageToken"] = token
    return answer


@router.post(LOCATION + "/models:upload", dependencies=[Depends(fault("UploadModel"))])
async def upload_model(request: Request, project: str, location: str) -> dict[str, Any]:
    body = await parse(request, UploadModelRequest)
    operation = emulator(request).registry.upload(naming.location(project, location), body)
    return operation.wire()


@router.get(MODEL + ":listVersions", dependencies=[Depends(fault("ListModelVersions"))])
async def list_versions(
    request: Request, project: str, location: str, model: str
) -> dict[str, Any]:
    registry = emulator(request).registry
    versions = registry.versions(
        _name(project, location, model), request.query_params.get("filter", "")
    )
    return _page(request, versions)


@router.delete(MODEL + ":deleteVersion", dependencies=[Depends(fault("DeleteModelVersion"))])
async def delete_version(
    request: Request, project: str, location: str, model: str
) -> dict[str, Any]:
    return emulator(request).registry.delete_version(_name(project, location, model)).wire()


@router.post(MODEL + ":mergeVersionAliases", dependencies=[Depends(fault("MergeVersionAliases"))])
async def merge_version_aliases(
    request: Request, project: str, location: str, model: str
) -> dict[str, Any]:
    body = await body_object(request)
    aliases = body.get("versionAliases", body.get("version_aliases", []))
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise invalid("version_aliases must be a list of strings.")
    name = _name(project, location, model)
    return emulator(request).registry.merge_aliases(name, aliases).wire()


@router.get(LOCATION + "/models", dependencies=[Depends(fault("ListModels"))])
async def list_models(request: Request, project: str, location: str) -> dict[str, Any]:
    registry = emulator(request).registry
    models = registry.find(
        naming.location(project, location), request.query_params.get("filter", "")
    )
    return _page(request, models)


@router.get(MODEL, dependencies=[Depends(fault("GetModel"))])
async def get_model(request: Request, project: str, location: str, model: str) -> dict[str, Any]:
    registry = emulator(request).registry
    return registry.view(registry.get(_name(project, location, model))).wire()


@router.patch(MODEL, dependencies=[Depends(fault("UpdateModel"))])
async def update_model(request: Request, project: str, location: str, model: str) -> dict[str, Any]:
    patch = await body_object(request)
    paths = naming.mask_paths(request.query_params.get("updateMask"))
    registry = emulator(request).registry
    updated = registry.update(_name(project, location, model), patch, paths)
    return registry.view(updated).wire()


@router.delete(MODEL, dependencies=[Depends(fault("DeleteModel"))])
async def delete_model(request: Request, project: str, location: str, model: str) -> dict[str, Any]:
    return emulator(request).registry.delete(_name(project, location, model)).wire()


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
