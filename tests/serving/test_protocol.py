"""Request bodies parse once at the boundary, and the predict route tells Vertex envelopes from OpenAI bodies."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serving.protocol import (
    ChatInstance,
    ChatRequest,
    CompletionRequest,
    PredictRequest,
    request_format,
)


def test_request_format_tells_the_three_bodies_apart() -> None:
    """instances → predict; messages or @requestFormat chatCompletions → chat; prompt → completion."""
    assert request_format({"instances": []}) == "predict"
    assert request_format({"messages": []}) == "chat"
    assert request_format({"@requestFormat": "chatCompletions"}) == "chat"
    assert request_format({"prompt": "x"}) == "completion"
    assert request_format({"input": "x"}) is None


def test_predict_instances_may_be_strings_prompts_or_chats() -> None:
    """The three instance shapes parse; parameters become sampling fields."""
    body = PredictRequest.model_validate(
        {
            "instances": ["a", {"prompt": "b"}, {"messages": [{"role": "user", "content": "c"}]}],
            "parameters": {"max_tokens": 3, "temperature": 0.5},
        }
    )
    assert body.instances[0] == "a"
    assert isinstance(body.instances[2], ChatInstance)
    assert body.parameters.max_tokens == 3


def test_openai_bodies_ignore_unknown_fields_but_check_types() -> None:
    """Unknown OpenAI fields are ignored; a number where text belongs is refused."""
    request = CompletionRequest.model_validate({"prompt": "x", "user": "u", "logit_bias": None})
    assert request.prompt == "x"
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"prompt": 5})
    with pytest.raises(ValidationError):
        ChatRequest.model_validate({"messages": []})


def test_chat_content_parts_are_joined_and_max_completion_tokens_wins() -> None:
    """Text parts of a message join into one string; max_completion_tokens overrides max_tokens."""
    chat = ChatRequest.model_validate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            ],
            "max_tokens": 5,
            "max_completion_tokens": 7,
        }
    )
    assert chat.messages[0].text() == "ab"
    assert chat.limit() == 7
