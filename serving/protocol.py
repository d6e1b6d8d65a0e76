"""Request bodies, parsed once at the boundary: the Vertex predict envelope and OpenAI completions and chat."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator


class Sampling(BaseModel):
    """Sampling parameters shared by every kind of request (vLLM's names, as in OpenAI where they exist)."""

    # OpenAI clients send fields we do not act on (user, logit_bias=None ...): ignored, not refused.
    model_config = ConfigDict(extra="ignore", frozen=True)

    max_tokens: Annotated[int, Field(ge=1)] | None = None
    n: Annotated[int, Field(ge=1)] = 1
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=-1)] | None = None
    min_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0.0)] | None = None
    stop: StrictStr | list[StrictStr] | None = None
    stop_token_ids: list[int] | None = None
    seed: int | None = None
    ignore_eos: bool = False
    min_tokens: Annotated[int, Field(ge=0)] = 0
    skip_special_tokens: bool = True


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    include_usage: bool = False


class CompletionRequest(Sampling):
    """POST /v1/completions (and a raw body with `prompt` on the predict route)."""

    model: str | None = None
    prompt: StrictStr | list[StrictStr] | list[int]
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, prompt: str | list[str] | list[int]) -> str | list[str] | list[int]:
        if len(prompt) == 0:
            raise ValueError("prompt must not be empty")
        return prompt


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["text"]
    text: StrictStr


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: StrictStr | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatRequest(Sampling):
    """POST /v1/chat/completions (and a raw body with `messages` on the predict route)."""

    model: str | None = None
    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class PromptInstance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: StrictStr


class ChatInstance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: Annotated[list[Message], Field(min_length=1)]


Instance = StrictStr | PromptInstance | ChatInstance


class PredictRequest(BaseModel):
    """Vertex AI's predict envelope: instances in, predictions out, in the same order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instances: Annotated[list[Instance], Field(min_length=1)]
    parameters: Sampling = Field(default_factory=Sampling)


def request_format(body: dict[str, Any]) -> Literal["predict", "chat", "completion"] | None:
    """Which API a body on the predict route speaks: Vertex rawPredict forwards OpenAI bodies as they are."""
    if "instances" in body:
        return "predict"
    marker = body.get("@requestFormat")
    if marker == "chatCompletions" or "messages" in body:
        return "chat"
    if marker == "completions" or "prompt" in body:
        return "completion"
    return None
