"""The container's app: a lifespan that owns the engine, Vertex's routes, and vLLM's own app behind them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from serving import compile_key, weights
from serving.activity import Activity
from serving.adapters import check_static_adapters, install_resolver
from serving.compile_cache import Keeper
from serving.engine import Phase, load
from serving.errors import ServingError, Unavailable
from serving.metrics import Metrics, shared
from serving.request_context import RequestContext, send_error, serving_error_response
from serving.settings import Settings
from serving.startup import Phases
from serving.state_store import store_for
from serving.vertex_api import Predict, health

logger = logging.getLogger("serving")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Listen at once; load the engine in the background; shut it down on the way out."""
    app.state.phase = Phase.LOADING
    loading = asyncio.create_task(_load(app), name="load-engine")
    try:
        yield
    finally:
        if app.state.phase is not Phase.FAILED:
            app.state.phase = Phase.DRAINING
        if not loading.done():
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await loading
        await app.state.activity.stop()
        engine = app.state.engine
        if engine is not None:
            app.state.engine = None
            await engine.shutdown()
            logger.info("engine shut down")


async def _load(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    prepare = functools.partial(
        weights.prepare,
        settings.model,
        settings.cache_dir,
        settings.download_workers,
        settings.allow_unsafe_weights,
        settings.trust_remote_code,
    )
    phases: Phases = app.state.phases
    keeper = compile_cache_keeper(settings)
    before_engine = {"compile_cache_restore": keeper.restore} if keeper else {}
    try:
        check_static_adapters(settings.args)
        resolver = install_resolver(settings)
        engine = await load(settings.args, prepare, settings.model_name, phases, before_engine)
        if resolver is not None:
            resolver.attach(engine.app)
    except Exception as error:
        app.state.phase = Phase.FAILED
        app.state.failure = f"{type(error).__name__}: {error}"
        logger.error("the engine failed to load", extra={"error": app.state.failure})
        app.state.on_fatal()
        return
    # Before vLLM's app serves its first request, which builds its middleware from these handlers.
    engine.app.add_exception_handler(ServingError, serving_error_response)
    app.state.engine = engine
    app.state.known_paths = frozenset(
        app.state.known_paths | {getattr(r, "path", "") for r in engine.app.routes}
    )
    if app.state.phase is Phase.LOADING:
        app.state.phase = Phase.READY
    app.state.activity.start()
    if keeper is not None:
        app.state.compile_cache_saver = keeper.save_in_background()
    logger.info("startup phases", extra=phases.summary())
    logger.info(
        "ready to serve",
        extra={
            "model": settings.model_name,
            "max_model_len": engine.max_model_len,
            "time_to_ready_s": round(time.monotonic() - app.state.started_monotonic, 2),
            "endpoint_id": settings.vertex.endpoint_id,
            "deployed_model_id": settings.vertex.deployed_model_id,
            "machine_type": settings.vertex.machine_type,
            "accelerator_type": settings.vertex.accelerator_type,
        },
    )


def compile_cache_keeper(settings: Settings) -> Keeper | None:
    """The compile cache's restore and save for this start; None with --no-compile-cache or no bucket."""
    if not (settings.compile_cache and settings.state_bucket):
        return None
    # Before the engine's processes start: they inherit it.
    os.environ.update(settings.compile_cache_env)
    return Keeper(
        store_for(settings.state_bucket),
        functools.partial(
            compile_key.key_for,
            settings.model,
            settings.args,
            settings.vertex.accelerator_type,
        ),
        settings.compile_cache_root,
        settings.compile_cache_max_bytes,
    )


async def metrics_route(request: Request) -> Response:
    """Prometheus text: the HTTP layer's metrics and vLLM's engine metrics (vllm:*)."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


class VllmServer:
    """Every path the container does not answer itself goes to vLLM's own app (its routes, its errors)."""

    def __init__(self, owner: FastAPI) -> None:
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        engine = self.owner.state.engine
        if (
            engine is None
        ):  # RequestContext admits nothing before READY; this is the race at shutdown
            await send_error(send, Unavailable("the engine is not running"))
            return
        await engine.app(scope, receive, send)


class Dispatch:
    """Below RequestContext: vLLM's paths go straight to vLLM's app, the rest through this app's own
    stack (its routes, its lifespan). A streamed chunk of a vLLM route then passes one wrapper of
    ours (RequestContext's send) instead of three (Starlette's error and exception middleware)."""

    def __init__(self, own: ASGIApp, vllm: ASGIApp, owner: FastAPI) -> None:
        self.own = own
        self.vllm = vllm
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.owner.state.own_paths:
            await self.vllm(scope, receive, send)
        else:
            await self.own(scope, receive, send)


class ContainerApp(FastAPI):
    """FastAPI for the container's own routes and lifespan, entered through RequestContext."""

    def build_middleware_stack(self) -> ASGIApp:
        own = super().build_middleware_stack()
        # RequestContext answers every error itself (ServingError's status, else 500), as it did
        # when it sat inside Starlette's ServerErrorMiddleware, which would answer 500 to all.
        if isinstance(own, ServerErrorMiddleware):
            own = own.app
        return RequestContext(Dispatch(own, VllmServer(self), self), owner=self)


def attach_router(app: FastAPI) -> None:
    """Vertex's routes at the AIP_* paths and /metrics; vLLM's app answers everything else."""
    settings: Settings = app.state.settings
    vertex = settings.vertex
    app.add_api_route(vertex.health_route, health, methods=["GET"])
    app.add_api_route("/metrics", metrics_route, methods=["GET"])
    app.router.routes.append(Route(vertex.predict_route, Predict(app), methods=["POST"]))
    app.router.default = VllmServer(app)
    app.state.open_paths = frozenset({vertex.health_route, "/metrics"})
    app.state.own_paths = frozenset({vertex.health_route, "/metrics", vertex.predict_route})
    app.state.known_paths = frozenset({vertex.health_route, vertex.predict_route, "/metrics"})


def create_app(
    settings: Settings,
    metrics: Metrics | None = None,
    on_fatal: Callable[[], Any] | None = None,
    phases: Phases | None = None,
) -> FastAPI:
    """The app for `settings`; `on_fatal` runs if the engine cannot load (main stops the server)."""
    app = ContainerApp(title="modeldrop serving", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.metrics = metrics or shared()
    app.state.phase = Phase.LOADING
    app.state.engine = None
    app.state.failure = None
    app.state.on_fatal = on_fatal or (lambda: None)
    app.state.started_monotonic = time.monotonic()
    app.state.phases = phases or Phases(app.state.started_monotonic)
    app.state.compile_cache_saver = None
    app.state.activity = Activity.from_settings(settings)
    attach_router(app)
    return app
