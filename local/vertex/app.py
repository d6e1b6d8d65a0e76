"""The FastAPI application: state built once in the lifespan, routers attached, errors as Google JSON."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from local.vertex import jsonbody, versions
from local.vertex.background import Background
from local.vertex.deployments import Deployments
from local.vertex.endpoints import Endpoints
from local.vertex.errors import ApiError, invalid
from local.vertex.faults import Faults
from local.vertex.monitoring import PredictionCounts
from local.vertex.registry import Registry
from local.vertex.rollout import Rollout
from local.vertex.settings import Settings
from local.vertex.store import Store

M = TypeVar("M", bound=BaseModel)


class Emulator:
    """Everything a request handler needs, built once per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Without --data-dir, state stays in memory; deployment logs go to a folder removed at exit.
        self.scratch = None if settings.data_dir else Path(tempfile.mkdtemp(prefix="vertex-"))
        data_dir = settings.data_dir or self.scratch
        assert data_dir is not None
        self.store = Store(settings.data_dir, settings.seed)
        self.background = Background()
        self.registry = Registry(self.store, settings.fidelity, self.background)
        self.endpoints = Endpoints(self.store, settings.fidelity, self.background)
        self.faults = Faults(settings.faults)
        self.deployments = Deployments(settings, data_dir)
        self.rollout = Rollout(self.endpoints, self.registry, self.deployments, self.faults)
        self.counts = PredictionCounts(
            settings.data_dir / "prediction_counts.log" if settings.data_dir else None,
            fidelity=settings.fidelity,
        )
        self.routing = random.Random(settings.seed)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=5.0))


def emulator(request: Request) -> Emulator:
    state: Emulator = request.app.state.emulator
    return state


def fault(method: str) -> Callable[[Request], Awaitable[None]]:
    """A dependency that applies the injected latency and errors of one RPC method."""

    async def apply(request: Request) -> None:
        await emulator(request).faults.apply(method)

    return apply


async def json_body(request: Request) -> Any:
    """The request body as JSON, within the emulator's depth and size limits (empty: {})."""
    raw = await request.body()
    if not raw:
        return {}
    fidelity = emulator(request).settings.fidelity
    return jsonbody.loads(raw, fidelity.json_max_depth, fidelity.json_max_bytes)


async def parse(request: Request, cls: type[M]) -> M:
    """The request body as `cls`, or INVALID_ARGUMENT naming what is wrong."""
    body = await json_body(request)
    try:
        return cls.model_validate(body)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()
        )
        raise invalid(f"Invalid JSON payload received: {problems}.") from error


async def body_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (for PATCH bodies applied through an update mask)."""
    body = await json_body(request)
    if not isinstance(body, dict):
        raise invalid("Invalid JSON payload received: the body must be a JSON object.")
    return body


def page_size(request: Request) -> int:
    text = request.query_params.get("pageSize") or "0"
    try:
        return int(text)
    except ValueError as error:
        raise invalid(f"page_size must be an integer, got {text!r}.") from error


async def _api_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return JSONResponse(error.body(), status_code=error.http_code)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    status = {404: "NOT_FOUND", 405: "UNIMPLEMENTED"}.get(error.status_code, "INVALID_ARGUMENT")
    message = f"The emulator does not serve {request.method} {request.url.path}."
    api = ApiError(status, message if error.status_code in (404, 405) else str(error.detail))
    return JSONResponse(api.body(), status_code=error.status_code)


class V1Beta1Alias:
    """Serve /v1beta1/... as /v1/..., remembering the version: v1beta1 has fields v1 refuses
    (scale-to-zero) and its operations carry v1beta1 types."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        version = versions.V1
        if scope["type"] == "http" and scope["path"].startswith("/v1beta1/"):
            scope = {**scope, "path": "/v1/" + scope["path"].removeprefix("/v1beta1/")}
            version = versions.V1BETA1
        token = versions.current.set(version)
        try:
            await self.app(scope, receive, send)
        finally:
            versions.current.reset(token)


def create_app(settings: Settings) -> FastAPI:
    from local.vertex import (
        api_control,
        api_endpoints,
        api_models,
        api_monitoring,
        api_operations,
        api_predict,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = Emulator(settings)
        app.state.emulator = state
        state.rollout.resume()
        watcher = asyncio.get_running_loop().create_task(
            state.deployments.watch(state.rollout.on_death)
        )
        try:
            yield
        finally:
            watcher.cancel()
            await state.rollout.close()
            await state.http.aclose()
            if state.scratch is not None:
                shutil.rmtree(state.scratch, ignore_errors=True)

    app = FastAPI(title="Vertex AI emulator", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(V1Beta1Alias)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    for module in (
        api_control,
        api_models,
        api_endpoints,
        api_predict,
        api_operations,
        api_monitoring,
    ):
        module.attach_router(app)
    return app
