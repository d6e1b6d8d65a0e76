"""Server-sent events for OpenAI streaming: each chunk is a fixed head plus the delta, encoded without a dict."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi.responses import Response, StreamingResponse

from serving.errors import ServingError, error_body
from serving.generation import Delta

DONE = b"data: [DONE]\n\n"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class ChunkFormat:
    """Encodes deltas as `text_completion` or `chat.completion.chunk` events.

    Streams send one event per few tokens, so the part every event shares is encoded once and only
    the index, text and finish reason are encoded per event.
    """

    def __init__(
        self, kind: Literal["completion", "chat"], response_id: str, created: int, model: str
    ) -> None:
        self.kind = kind
        self.object = "text_completion" if kind == "completion" else "chat.completion.chunk"
        self.header = {"id": response_id, "object": self.object, "created": created, "model": model}
        self._head = b"data: " + _dumps(self.header)[:-1] + b',"choices":[{"index":'
        self._text = b',"text":' if kind == "completion" else b',"delta":{"content":'
        self._after_text = b"" if kind == "completion" else b"}"

    def encode(self, delta: Delta) -> bytes:
        finish = b"null" if delta.finish_reason is None else _dumps(delta.finish_reason)
        return b"".join(
            (
                self._head,
                str(delta.index).encode(),
                self._text,
                _dumps(delta.text),
                self._after_text,
                b',"logprobs":null,"finish_reason":',
                finish,
                b"}]}\n\n",
            )
        )

    def opening(self, index: int) -> bytes:
        """Chat streams announce the assistant role first, per choice."""
        choice = {
            "index": index,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
        return b"data: " + _dumps({**self.header, "choices": [choice]}) + b"\n\n"

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        return b"data: " + _dumps({**self.header, "choices": [], "usage": usage}) + b"\n\n"


async def sse_response(
    deltas: AsyncIterator[Delta],
    chunks: ChunkFormat,
    prompt_tokens: int,
    include_usage: bool,
    metrics: Any,
) -> Response:
    """Stream `deltas`; the first is awaited before the headers go, so a rejected request gets a 4xx."""
    iterator = deltas.__aiter__()
    try:
        first: Delta | None = await iterator.__anext__()
    except StopAsyncIteration:
        first = None

    async def events() -> AsyncIterator[bytes]:
        tokens = 0
        opened: set[int] = set()
        chat = chunks.kind == "chat"
        delta = first
        try:
            while delta is not None:
                if chat and delta.index not in opened:
                    opened.add(delta.index)
                    yield chunks.opening(delta.index)
                tokens += delta.tokens
                yield chunks.encode(delta)
                try:
                    delta = await iterator.__anext__()
                except StopAsyncIteration:
                    delta = None
            if include_usage:
                yield chunks.usage(prompt_tokens, tokens)
            yield DONE
        except ServingError as error:
            # The headers are gone already: the error travels as an event, as OpenAI's API does.
            yield b"data: " + _dumps(error_body(error)) + b"\n\n"
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()
            metrics.prompt_tokens.inc(prompt_tokens)
            metrics.completion_tokens.inc(tokens)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
