"""vLLM's AsyncLLM and its own OpenAI server app, built in this process for the prepared weights."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _start_client(args: argparse.Namespace) -> Any:
    """Blocking (tens of seconds): run in a worker thread so health keeps answering."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.async_llm import AsyncLLM

    # As vLLM's build_async_engine_client does it, in the API-server usage context.
    engine_args = AsyncEngineArgs.from_cli_args(args)
    usage = UsageContext.OPENAI_API_SERVER
    config = engine_args.create_engine_config(usage_context=usage)
    return AsyncLLM.from_vllm_config(
        vllm_config=config,
        usage_context=usage,
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


async def load(args: argparse.Namespace, folder_task: Any, model: str) -> Engine:
    """Prepare the weights and start the engine in worker threads; then build vLLM's app, warmed up."""
    folder: Path = await asyncio.to_thread(folder_task)
    engine_args = argparse.Namespace(**{**vars(args), "model": str(folder)})
    client = await asyncio.to_thread(_start_client, engine_args)
    try:
        engine = await build_server(client, engine_args)
    except BaseException:
        client.shutdown()
        raise
    try:
        await warm_up(engine.app, model)
    except BaseException:
        await engine.shutdown()
        raise
    return engine
