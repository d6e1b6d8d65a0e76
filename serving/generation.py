"""From a parsed request to engine calls: prompts tokenized, limits enforced, outputs collected or streamed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from serving.engine import Engine
from serving.errors import BadRequest
from serving.protocol import Message, Sampling
from serving.settings import Settings


@dataclass
class Choice:
    index: int
    text: str = ""
    finish_reason: str | None = None
    tokens: int = 0


@dataclass
class Completion:
    """What one prompt produced: its prompt length and `n` choices."""

    prompt_tokens: int
    choices: list[Choice] = field(default_factory=list)

    @property
    def completion_tokens(self) -> int:
        return sum(choice.tokens for choice in self.choices)


@dataclass(frozen=True)
class Delta:
    """A piece of one choice's text while streaming; `finish_reason` set on its last piece."""

    index: int
    text: str
    tokens: int
    finish_reason: str | None


class Generator:
    """Runs prompts on the engine within the configured limits."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    def prompt_ids(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            if not prompt:
                raise BadRequest("prompt must not be empty", param="prompt")
            return self.engine.encode(prompt)
        vocab = self.engine.vocab_size
        if any(not 0 <= token < vocab for token in prompt):
            raise BadRequest(f"prompt token ids must be in [0, {vocab})", param="prompt")
        return list(prompt)

    def chat_ids(self, messages: list[Message]) -> list[int]:
        return self.engine.render_chat([{"role": m.role, "content": m.text()} for m in messages])

    def params(
        self, sampling: Sampling, prompt_len: int, max_tokens: int | None, stream: bool
    ) -> Any:
        """vLLM SamplingParams for one prompt, after the limits; BadRequest names the broken one."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        limits = self.settings
        context = self.engine.max_model_len
        if sampling.n > limits.max_n:
            raise BadRequest(f"n is {sampling.n}; at most {limits.max_n} is allowed", param="n")
        if prompt_len >= context:
            raise BadRequest(
                f"the prompt is {prompt_len} tokens; this model's maximum context length is "
                f"{context} tokens, prompt and output together",
                param="prompt",
            )
        if max_tokens is not None:
            if max_tokens > limits.max_tokens_limit:
                raise BadRequest(
                    f"max_tokens is {max_tokens}; at most {limits.max_tokens_limit} is allowed",
                    param="max_tokens",
                )
            if prompt_len + max_tokens > context:
                raise BadRequest(
                    f"this model's maximum context length is {context} tokens; the prompt is "
                    f"{prompt_len} tokens and max_tokens asks for {max_tokens} more",
                    param="max_tokens",
                )
        else:
            max_tokens = min(limits.default_max_tokens, context - prompt_len)
        fields = sampling.model_dump(exclude_none=True, exclude={"max_tokens"})
        fields = {k: v for k, v in fields.items() if k in _SAMPLING_FIELDS}
        try:
            return SamplingParams(
                **fields,
                max_tokens=max_tokens,
                output_kind=RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY,
            )
        except ValueError as error:  # vLLM's own checks of combinations
            raise BadRequest(str(error)) from None

    async def complete(self, prompt_ids: list[int], params: Any) -> Completion:
        """Run one prompt to the end."""
        completion = Completion(prompt_tokens=len(prompt_ids))
        async for output in self.engine.generate(prompt_ids, params):
            for out in output.outputs:
                completion.choices.append(
                    Choice(out.index, out.text, out.finish_reason, len(out.token_ids))
                )
        completion.choices.sort(key=lambda choice: choice.index)
        return completion

    async def complete_all(self, prompts: list[tuple[list[int], Any]]) -> list[Completion]:
        """Run several prompts at once (they join the engine's batch together), results in order."""
        if len(prompts) == 1:
            return [await self.complete(*prompts[0])]
        return list(await asyncio.gather(*(self.complete(ids, p) for ids, p in prompts)))

    async def stream(self, prompt_ids: list[int], params: Any) -> AsyncIterator[Delta]:
        """The choices' text as the engine produces it."""
        async for output in self.engine.generate(prompt_ids, params):
            for out in output.outputs:
                yield Delta(out.index, out.text, len(out.token_ids), out.finish_reason)


_SAMPLING_FIELDS = frozenset(Sampling.model_fields) - {"max_tokens"}
