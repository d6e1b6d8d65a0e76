"""The FastAPI app: a lifespan that owns the engine, the routers, the request context and the error table."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import weights
from serving.engine import Phase, load
from serving.errors import PayloadTooLarge, ServingError, Unavailable, error_body, status_of
from serving.generation import Generator
from serving.logs import request_id_var
from serving.metrics import Metrics, shared
from serving.openai_api import json_response
from serving.openai_api import router as openai_router
from serving.settings import Settings
from serving.vertex_api import add_routes

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
        engine = app.state.engine
        if engine is not None:
            app.state.engine = None
            engine.shutdown()
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
    try:
        engine = await load(settings, prepare)
    except Exception as error:
        app.state.phase = Phase.FAILED
        app.state.failure = f"{type(error).__name__}: {error}"
        logger.error("the engine failed to load", extra={"error": app.state.failure})
        app.state.on_fatal()
        return
    app.state.engine = engine
    app.state.generator = Generator(engine, settings)
    if app.state.phase is Phase.LOADING:
        app.state.phase = Phase.READY
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


class RequestContext:
    """Pure ASGI (no per-request task): request id, admission, body limit, metrics and the access log."""

    def __init__(self, app: ASGIApp, owner: FastAPI) -> None:
        self.app = app
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.owner.state
        settings: Settings = state.settings
        path: str = scope["path"]
        headers = dict(scope["headers"])
        request_id = _request_id(headers)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            if path in state.admitted_paths and state.phase is not Phase.READY:
                reason = {
                    Phase.LOADING: "the model is still loading",
                    Phase.DRAINING: "this replica is shutting down",
                    Phase.FAILED: "the engine is not running",
                }[state.phase]
                await _send_error(send_with_id, Unavailable(reason))
                return
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
                await _send_error(send_with_id, _too_large(settings.max_body_bytes))
                return
            await self.app(scope, _limited(receive, settings.max_body_bytes), send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = path if path in state.known_paths else "other"
            state.metrics.requests.labels(route, str(status)).inc()
            state.metrics.latency.labels(route).observe(elapsed)
            if path != settings.vertex.health_route or status != 200:
                logger.info(
                    f"{scope['method']} {path} {status}",
                    extra={
                        "httpRequest": {
                            "requestMethod": scope["method"],
                            "requestUrl": path,
                            "status": status,
                            "latency": f"{elapsed:.6f}s",
                        }
                    },
                )
            request_id_var.reset(token)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the body is larger than {limit} bytes")


def _limited(receive: Receive, limit: int) -> Receive:
    """`receive`, failing with PayloadTooLarge once the body passes `limit` bytes (chunked bodies too)."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(limit)
        return message

    return wrapped


async def _send_error(send: Send, error: ServingError) -> None:
    body = json.dumps(error_body(error)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status_of(error), "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _request_id(headers: dict[bytes, bytes]) -> str:
    given = headers.get(b"x-request-id")
    if given and len(given) <= 128:
        return given.decode("latin-1")
    trace = headers.get(b"x-cloud-trace-context")
    if trace:
        return trace.decode("latin-1").split("/", 1)[0][:128]
    return uuid.uuid4().hex


async def _serving_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ServingError)
    if status_of(error) >= 500:
        logger.error(error.message, exc_info=error.__cause__ is not None)
    return json_response(error_body(error), status_of(error))


async def metrics_route(request: Request) -> Response:
    """Prometheus text: the HTTP layer's metrics and vLLM's engine metrics (vllm:*)."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def attach_router(app: FastAPI) -> None:
    """Add every route to `app`: Vertex's (at the AIP_* paths), the OpenAI API and /metrics."""
    settings: Settings = app.state.settings
    add_routes(app)
    app.include_router(openai_router)
    app.add_api_route("/metrics", metrics_route, methods=["GET"])
    generation = {settings.vertex.predict_route, "/v1/completions", "/v1/chat/completions"}
    app.state.admitted_paths = frozenset(generation | {"/v1/models"})
    app.state.known_paths = frozenset(
        app.state.admitted_paths | {settings.vertex.health_route, "/metrics"}
    )


def create_app(
    settings: Settings,
    metrics: Metrics | None = None,
    on_fatal: Callable[[], Any] | None = None,
) -> FastAPI:
    """The app for `settings`; `on_fatal` runs if the engine cannot load (main stops the server)."""
    app = FastAPI(title="modeldrop serving", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.metrics = metrics or shared()
    app.state.phase = Phase.LOADING
    app.state.engine = None
    app.state.generator = None
    app.state.failure = None
    app.state.on_fatal = on_fatal or (lambda: None)
    app.state.started = int(time.time())
    app.state.started_monotonic = time.monotonic()
    app.add_exception_handler(ServingError, _serving_error)
    attach_router(app)
    app.add_middleware(RequestContext, owner=app)
    return app
