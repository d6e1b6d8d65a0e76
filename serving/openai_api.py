"""The OpenAI-compatible API: /v1/completions, /v1/chat/completions (JSON or server-sent events), /v1/models."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from serving.cancellation import unless_disconnected
from serving.errors import BadRequest, NotFound, ServingError
from serving.generation import Completion, Generator
from serving.protocol import ChatRequest, CompletionRequest
from serving.request_body import parse_as, read_json
from serving.sse import ChunkFormat, sse_response

router = APIRouter()


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    return Response(_dumps(body), status_code=status, media_type="application/json")


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _check_model(request: Request, model: str | None) -> None:
    served = request.app.state.settings.model_name
    if model is not None and model not in (served, request.app.state.settings.model):
        raise NotFound(
            f"model {model!r} is not served here; this container serves {served!r}", param="model"
        )


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    settings = request.app.state.settings
    card = {
        "id": settings.model_name,
        "object": "model",
        "created": request.app.state.started,
        "owned_by": "modeldrop",
        "root": settings.model,
        "max_model_len": request.app.state.engine.max_model_len,
    }
    return json_response({"object": "list", "data": [card]})


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await run_completion(request, parse_as(CompletionRequest, await read_json(request)))


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await run_chat(request, parse_as(ChatRequest, await read_json(request)))


async def run_completion(request: Request, body: CompletionRequest) -> Response:
    _check_model(request, body.model)
    generator: Generator = request.app.state.generator
    prompts = _prompts(body.prompt)
    if len(prompts) > request.app.state.settings.max_instances:
        raise _too_many(len(prompts), request.app.state.settings.max_instances)
    runs = []
    for prompt in prompts:
        ids = generator.prompt_ids(prompt)
        runs.append((ids, generator.params(body, len(ids), body.max_tokens, body.stream)))
    name, created, rid = request.app.state.settings.model_name, int(time.time()), _id("cmpl")
    if body.stream:
        if len(runs) > 1:
            raise BadRequest("stream supports one prompt per request", param="prompt")
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = ChunkFormat("completion", rid, created, name)
        ids, params = runs[0]
        return await sse_response(
            generator.stream(ids, params),
            chunks,
            len(ids),
            include_usage,
            request.app.state.metrics,
        )
    results = await unless_disconnected(request, generator.complete_all(runs))
    choices = []
    for number, result in enumerate(results):
        for choice in result.choices:
            choices.append(
                {
                    "index": number * body.n + choice.index,
                    "text": choice.text,
                    "logprobs": None,
                    "finish_reason": choice.finish_reason,
                }
            )
    _count_tokens(request, results)
    return json_response(
        {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": name,
            "choices": choices,
            "usage": _usage(
                sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results)
            ),
        }
    )


async def run_chat(request: Request, body: ChatRequest) -> Response:
    _check_model(request, body.model)
    generator: Generator = request.app.state.generator
    ids = generator.chat_ids(body.messages)
    params = generator.params(body, len(ids), body.limit(), body.stream)
    name, created, rid = request.app.state.settings.model_name, int(time.time()), _id("chatcmpl")
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = ChunkFormat("chat", rid, created, name)
        return await sse_response(
            generator.stream(ids, params),
            chunks,
            len(ids),
            include_usage,
            request.app.state.metrics,
        )
    result = await unless_disconnected(request, generator.complete(ids, params))
    _count_tokens(request, [result])
    choices = [
        {
            "index": c.index,
            "message": {"role": "assistant", "content": c.text},
            "logprobs": None,
            "finish_reason": c.finish_reason,
        }
        for c in result.choices
    ]
    return json_response(
        {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": name,
            "choices": choices,
            "usage": _usage(result.prompt_tokens, result.completion_tokens),
        }
    )


def _prompts(prompt: str | list[str] | list[int]) -> list[str | list[int]]:
    if isinstance(prompt, str):
        return [prompt]
    if all(isinstance(p, int) for p in prompt):
        return [[int(p) for p in prompt]]
    return [str(p) for p in prompt]


def _too_many(count: int, limit: int) -> ServingError:
    return BadRequest(f"{count} prompts in one request; at most {limit} are allowed")


def _count_tokens(request: Request, results: list[Completion]) -> None:
    metrics = request.app.state.metrics
    metrics.prompt_tokens.inc(sum(r.prompt_tokens for r in results))
    metrics.completion_tokens.inc(sum(r.completion_tokens for r in results))


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"
