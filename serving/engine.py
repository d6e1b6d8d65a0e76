"""vLLM's async engine: built from the settings off the event loop, warmed up, and watched for death."""

from __future__ import annotations

import asyncio
import enum
import gc
import inspect
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.errors import BadRequest, EngineFailure, Unavailable
from serving.settings import Settings

logger = logging.getLogger(__name__)


class Phase(enum.Enum):
    """Where the container is in its life; health answers 200 only in READY."""

    LOADING = "loading"  # weights downloading or the engine starting
    READY = "ready"  # loaded, warmed up, serving
    DRAINING = "draining"  # SIGTERM received: finishing in-flight requests, admitting none
    FAILED = "failed"  # weights or engine failed to load, or the engine died


def engine_args(settings: Settings, folder: Path) -> Any:
    """AsyncEngineArgs for the model in `folder` (only fields both supported vLLM lines share)."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    fields: dict[str, Any] = dict(
        model=str(folder),
        served_model_name=settings.model_name,
        dtype=settings.dtype,
        max_model_len=settings.max_model_len,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        tensor_parallel_size=settings.tensor_parallel_size,
        max_num_seqs=settings.max_num_seqs,
        quantization=settings.quantization,
        seed=settings.seed,
        enforce_eager=settings.enforce_eager,
        trust_remote_code=settings.trust_remote_code,
        # Keeps vLLM's Prometheus metrics (running/waiting sequences, tokens, latencies) on.
        disable_log_stats=False,
    )
    return AsyncEngineArgs(**fields)


@dataclass
class Engine:
    """The running AsyncLLM plus what requests need from it, fetched once."""

    client: Any
    tokenizer: Any
    max_model_len: int
    vocab_size: int = 0

    @classmethod
    def start(cls, settings: Settings, folder: Path) -> Engine:
        """Blocking (tens of seconds): call it in a worker thread so health keeps answering."""
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        # The API-server context gets vLLM's server defaults (batch sizes), as `vllm serve` does.
        client = AsyncLLM.from_engine_args(
            engine_args(settings, folder), usage_context=UsageContext.OPENAI_API_SERVER
        )
        tokenizer = client.get_tokenizer()
        return cls(client, tokenizer, int(client.model_config.max_model_len))

    async def finish_start(self) -> None:
        # Some vLLM lines return the tokenizer through a coroutine.
        if inspect.isawaitable(self.tokenizer):
            self.tokenizer = await self.tokenizer
        # len() of a large vocabulary can be slow on some tokenizer classes: measure it once.
        self.vocab_size = len(self.tokenizer)

    @property
    def errored(self) -> bool:
        return bool(self.client.errored)

    def encode(self, text: str, special_tokens: bool = True) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=special_tokens))

    def render_chat(self, messages: list[dict[str, str]]) -> list[int]:
        try:
            text = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except Exception as error:  # the template's own error (e.g. roles out of order)
            raise BadRequest(f"messages do not fit the model's chat template: {error}") from None
        # The template writes BOS itself; the tokenizer must not add another.
        return self.encode(str(text), special_tokens=False)

    async def generate(self, prompt_ids: list[int], params: Any) -> AsyncIterator[Any]:
        """The engine's outputs for one prompt; engine errors become ServingErrors."""
        from vllm.v1.engine.exceptions import EngineDeadError

        request_id = uuid.uuid4().hex
        try:
            async for output in self.client.generate(
                {"prompt_token_ids": prompt_ids}, params, request_id
            ):
                yield output
        except EngineDeadError:
            raise Unavailable("the engine died; this replica is restarting") from None
        except ValueError as error:  # vLLM's request validation
            raise BadRequest(str(error)) from None
        except Exception as error:
            if type(error).__name__ in ("VLLMValidationError", "VLLMClientError"):
                raise BadRequest(str(error)) from None
            raise EngineFailure(f"generation failed: {type(error).__name__}") from error

    async def warm_up(self) -> None:
        """One short request through the whole path, so the first client does not pay for it."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            max_tokens=2, ignore_eos=True, output_kind=RequestOutputKind.FINAL_ONLY
        )
        async for _ in self.generate(self.encode("warm up"), params):
            pass

    def shutdown(self) -> None:
        self.client.shutdown()


async def load(settings: Settings, folder_task: Any) -> Engine:
    """Prepare the weights and start the engine, each in a worker thread; then warm it up."""
    folder: Path = await asyncio.to_thread(folder_task)
    engine = await asyncio.to_thread(Engine.start, settings, folder)
    try:
        await engine.finish_start()
        await engine.warm_up()
    except BaseException:
        engine.shutdown()
        raise
    # Everything allocated so far lives as long as the process: move it out of the collector's
    # sight, so full collections while serving walk only what requests allocate (shorter pauses).
    gc.collect()
    gc.freeze()
    return engine
