"""The OpenAI-compatible API: /v1/completions, /v1/chat/completions (JSON or server-sent events), /v1/models."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from serving.errors import BadRequest, NotFound, ServingError, error_body
from serving.generation import Completion, Delta, Generator
from serving.protocol import ChatRequest, CompletionRequest
from serving.request_body import parse_as, read_json

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

        def chunk(delta: Delta) -> dict[str, Any]:
            choice = {
                "index": delta.index,
                "text": delta.text,
                "logprobs": None,
                "finish_reason": delta.finish_reason,
            }
            return {
                "id": rid,
                "object": "text_completion",
                "created": created,
                "model": name,
                "choices": [choice],
            }

        return await _sse(
            request,
            generator.stream(*runs[0]),
            chunk,
            None,
            include_usage,
            len(runs[0][0]),
            rid,
            "text_completion",
            created,
            name,
        )
    results = await generator.complete_all(runs)
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

        def chunk(delta: Delta) -> dict[str, Any]:
            choice = {
                "index": delta.index,
                "delta": {"content": delta.text},
                "logprobs": None,
                "finish_reason": delta.finish_reason,
            }
            return {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": name,
                "choices": [choice],
            }

        def opening(index: int) -> dict[str, Any]:
            choice = {
                "index": index,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
            return {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": name,
                "choices": [choice],
            }

        return await _sse(
            request,
            generator.stream(ids, params),
            chunk,
            opening,
            include_usage,
            len(ids),
            rid,
            "chat.completion.chunk",
            created,
            name,
        )
    result = await generator.complete(ids, params)
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


async def _sse(
    request: Request,
    deltas: AsyncIterator[Delta],
    chunk: Callable[[Delta], dict[str, Any]],
    opening: Callable[[int], dict[str, Any]] | None,
    include_usage: bool,
    prompt_tokens: int,
    rid: str,
    kind: str,
    created: int,
    name: str,
) -> Response:
    """Server-sent events; the first output is awaited here so a rejected request still gets a 4xx."""
    metrics = request.app.state.metrics
    iterator = deltas.__aiter__()
    try:
        first: Delta | None = await iterator.__anext__()
    except StopAsyncIteration:
        first = None

    async def events() -> AsyncIterator[bytes]:
        tokens = 0
        opened: set[int] = set()
        try:
            pending = [first] if first is not None else []
            while True:
                for delta in pending:
                    if opening is not None and delta.index not in opened:
                        opened.add(delta.index)
                        yield b"data: " + _dumps(opening(delta.index)) + b"\n\n"
                    tokens += delta.tokens
                    yield b"data: " + _dumps(chunk(delta)) + b"\n\n"
                try:
                    pending = [await iterator.__anext__()]
                except StopAsyncIteration:
                    break
            if include_usage:
                usage = {
                    "id": rid,
                    "object": kind,
                    "created": created,
                    "model": name,
                    "choices": [],
                    "usage": _usage(prompt_tokens, tokens),
                }
                yield b"data: " + _dumps(usage) + b"\n\n"
            yield b"data: [DONE]\n\n"
        except ServingError as error:
            # Headers are gone already: the error travels as an event, as OpenAI's API does.
            yield b"data: " + _dumps(error_body(error)) + b"\n\n"
        finally:
            await _close(iterator)
            metrics.prompt_tokens.inc(prompt_tokens)
            metrics.completion_tokens.inc(tokens)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


async def _close(iterator: AsyncIterator[Delta]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


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
