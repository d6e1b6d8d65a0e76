"""Streamed chunks are OpenAI's JSON, encoded from a fixed head plus the delta."""

from __future__ import annotations

import json

from serving.generation import Delta
from serving.sse import DONE, ChunkFormat


def _event(data: bytes) -> dict[str, object]:
    assert data.startswith(b"data: ") and data.endswith(b"\n\n")
    parsed: dict[str, object] = json.loads(data[6:])
    return parsed


def test_completion_chunks_are_text_completion_objects() -> None:
    """A completion delta encodes as a text_completion chunk with text, index and finish reason."""
    chunks = ChunkFormat("completion", "cmpl-1", 7, "tiny")
    event = _event(chunks.encode(Delta(1, 'say "hi"\n\u00e9', 2, "length")))
    assert event == {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 7,
        "model": "tiny",
        "choices": [
            {"index": 1, "text": 'say "hi"\n\u00e9', "logprobs": None, "finish_reason": "length"}
        ],
    }


def test_chat_chunks_carry_content_deltas_after_a_role_opening() -> None:
    """Chat deltas go under delta.content; the opening event names the assistant role."""
    chunks = ChunkFormat("chat", "chatcmpl-1", 7, "tiny")
    event = _event(chunks.encode(Delta(0, "x", 1, None)))
    assert event["object"] == "chat.completion.chunk"
    assert event["choices"] == [
        {"index": 0, "delta": {"content": "x"}, "logprobs": None, "finish_reason": None}
    ]
    opening = _event(chunks.opening(0))
    assert opening["choices"][0]["delta"] == {"role": "assistant", "content": ""}  # type: ignore[index]


def test_usage_event_has_no_choices_and_the_stream_ends_with_done() -> None:
    """The usage event reports totals with empty choices; [DONE] closes the stream."""
    event = _event(ChunkFormat("completion", "c", 1, "m").usage(5, 8))
    assert event["choices"] == []
    assert event["usage"] == {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}
    assert DONE == b"data: [DONE]\n\n"
