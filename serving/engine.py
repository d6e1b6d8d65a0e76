"""vLLM's AsyncLLM and its own OpenAI server app, built in this process for the prepared weights."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.startup import Phases

logger = logging.getLogger(__name__)


class Phase(enum.Enum):
    """Where the container is in its life; health answers 200 only in READY."""

    LOADING = "loading"  # weights downloading or the engine starting
    READY = "ready"  # loaded, warmed up, serving
    DRAINING = "draining"  # SIGTERM received: finishing in-flight requests, admitting none
    FAILED = "failed"  # weights or engine failed to load, or the engine died


@dataclass
class Engine:
    """The running AsyncLLM and the vLLM server app (routes, serving classes) built around it."""

    client: Any
    app: Any  # vLLM's FastAPI app: its routers, middleware, exception handlers and state
    exit_stack: contextlib.AsyncExitStack

    @property
    def errored(self) -> bool:
        return bool(self.client.errored)

    @property
    def max_model_len(self) -> int:
        return int(self.client.model_config.max_model_len)

    async def shutdown(self) -> None:
        try:
            await self.exit_stack.aclose()
        finally:
            self.client.shutdown()


def _import_engine() -> None:
    """vLLM's engine modules, imported while the weights download (the parser imported the rest)."""
    import vllm.engine.arg_utils
    import vllm.entrypoints.launchers.api_server.app_state
    import vllm.entrypoints.launchers.app
    import vllm.v1.engine.async_llm  # noqa: F401


def _engine_config(args: argparse.Namespace) -> tuple[Any, Any]:
    """vLLM's config for `args` (this is where vLLM inspects the model class and reads the weights'
    headers), in the API-server usage context, as vLLM's build_async_engine_client does it."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.usage.usage_lib import UsageContext

    engine_args = AsyncEngineArgs.from_cli_args(args)
    config = engine_args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
    return engine_args, config


def _start_client(engine_args: Any, config: Any) -> Any:
    """Blocking (tens of seconds: the engine process starts, loads, compiles): run in a worker thread."""
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.async_llm import AsyncLLM

    return AsyncLLM.from_vllm_config(
        vllm_config=config,
        usage_context=UsageContext.OPENAI_API_SERVER,
        enable_log_requests=engine_args.enable_log_requests,
        aggregate_engine_logging=engine_args.aggregate_engine_logging,
        disable_log_stats=engine_args.disable_log_stats,
    )


async def build_server(client: Any, args: argparse.Namespace) -> Engine:
    """vLLM's own app and state for `client`, as `vllm serve` builds them (build_app, init_app_state)."""
    from vllm.entrypoints.launchers.api_server.app_state import init_app_state
    from vllm.entrypoints.launchers.app import build_app

    await client.reset_mm_cache()
    tasks = await client.get_supported_tasks()
    app = build_app(args, tasks, client.model_config)
    await init_app_state(client, app.state, args, tasks)
    stack = contextlib.AsyncExitStack()
    # vLLM's lifespan: periodic engine stats in the log, and the startup heap frozen for the GC.
    await stack.enter_async_context(app.router.lifespan_context(app))
    return Engine(client, app, stack)


async def warm_up(app: Any, model: str) -> None:
    """One short completion through vLLM's whole HTTP path, so the first client does not pay for it."""
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://warm-up") as client:
        body = {"model": model, "prompt": "warm up", "max_tokens": 2, "ignore_eos": True}
        response = await client.post("/v1/completions", json=body, timeout=600)
        if response.status_code != 200:
            raise RuntimeError(f"warm-up failed: {response.status_code} {response.text[:500]}")


async def load(
    args: argparse.Namespace,
    prepare: Callable[[], Path],
    model: str,
    phases: Phases,
    before_engine: Mapping[str, Callable[[], object]] | None = None,
) -> Engine:
    """Prepare the weights while vLLM's engine modules import and `before_engine` runs (each in a
    worker thread, at once); then start the engine and build vLLM's app, warmed up.

    The engine's config waits for the weights: vLLM reads their safetensors headers to build it.
    """
    jobs: dict[str, Callable[[], object]] = {
        "weights": prepare,
        "engine_imports": _import_engine,
        **(before_engine or {}),
    }
    done = await asyncio.gather(
        *(asyncio.to_thread(phases.timed(name, job)) for name, job in jobs.items())
    )
    folder = Path(str(done[0]))
    engine_args = argparse.Namespace(**{**vars(args), "model": str(folder)})
    vllm_args, config = await asyncio.to_thread(
        phases.timed("engine_config", functools.partial(_engine_config, engine_args))
    )
    client = await asyncio.to_thread(
        phases.timed("engine_start", functools.partial(_start_client, vllm_args, config))
    )
    try:
        with phases.phase("server_build"):
            engine = await build_server(client, engine_args)
    except BaseException:
        client.shutdown()
        raise
    try:
        with phases.phase("warm_up"):
            await warm_up(engine.app, model)
    except BaseException:
        await engine.shutdown()
        raise
    return engine
