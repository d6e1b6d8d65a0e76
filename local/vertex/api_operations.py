"""Long-running operations, at /v1/{name} and /ui/{name} (where the SDKs poll them)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request

from local.vertex import listing
from local.vertex.app import emulator, fault, page_size
from local.vertex.errors import ApiError, invalid, not_found

router = APIRouter()
_OPERATION = re.compile(r"^projects/[^/]+/locations/[^/]+(?:/[^/]+/[^/]+)*/operations/[^/:]+$")
_COLLECTION = re.compile(r"^projects/[^/]+/locations/[^/]+(?:/[^/]+/[^/]+)*/operations$")
MAX_WAIT_S = 60.0


def _operation(request: Request, name: str) -> dict[str, Any]:
    operation = emulator(request).store.operations.get(name)
    if operation is None:
        raise not_found("Operation", name)
    return operation.wire()


def _list(request: Request, parent: str) -> dict[str, Any]:
    params = request.query_params
    mine = [o for n, o in emulator(request).store.operations.items() if n.startswith(parent + "/")]
    chunk, token = listing.page(mine, page_size(request), params.get("pageToken"))
    answer: dict[str, Any] = {"operations": [o.wire() for o in chunk]}
    if token:
        answer["nextPageToken"] = token
    return answer


async def get(request: Request, name: str) -> dict[str, Any]:
    if _COLLECTION.match(name):
        return _list(request, name)
    if not _OPERATION.match(name):
        raise ApiError("NOT_FOUND", f"The emulator does not serve GET {request.url.path}.")
    return _operation(request, name)


@router.get("/v1/{name:path}", dependencies=[Depends(fault("GetOperation"))])
async def get_v1(request: Request, name: str) -> dict[str, Any]:
    return await get(request, name)


@router.get("/ui/{name:path}", dependencies=[Depends(fault("GetOperation"))])
async def get_ui(request: Request, name: str) -> dict[str, Any]:
    return await get(request, name)


@router.post("/v1/{name:path}", dependencies=[Depends(fault("WaitOperation"))])
@router.post("/ui/{name:path}", dependencies=[Depends(fault("WaitOperation"))])
async def post(request: Request, name: str) -> dict[str, Any]:
    """`:wait` or `:cancel` on an operation (the GAPIC REST clients call them under /ui/)."""
    base, _, verb = name.rpartition(":")
    if verb not in {"wait", "cancel"} or not _OPERATION.match(base):
        raise ApiError("NOT_FOUND", f"The emulator does not serve POST {request.url.path}.")
    if verb == "cancel":
        return cancel(request, base)
    return await wait(request, base)


def cancel(request: Request, name: str) -> dict[str, Any]:
    """Best-effort cancellation: a running operation ends with CANCELLED (code 1); a done one is kept."""
    _operation(request, name)
    emulator(request).background.cancel(name)
    return {}


async def wait(request: Request, base: str) -> dict[str, Any]:
    """Block until the operation is done or the timeout (a Duration, at most 60s) passes."""
    timeout = request.query_params.get("timeout", f"{MAX_WAIT_S}s")
    try:
        seconds = min(float(timeout.removesuffix("s")), MAX_WAIT_S)
    except ValueError as error:
        raise invalid(f"timeout must look like '30s', not {timeout!r}.") from error
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not (answer := _operation(request, base))["done"] and loop.time() < deadline:
        await asyncio.sleep(0.1)
    return answer


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
