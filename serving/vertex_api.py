"""Vertex AI's routes: health (AIP_HEALTH_ROUTE) and predict (AIP_PREDICT_ROUTE), which also takes raw OpenAI bodies."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from serving.cancellation import unless_disconnected
from serving.engine import Phase
from serving.errors import BadRequest
from serving.generation import Completion, Generator
from serving.openai_api import json_response, run_chat, run_completion
from serving.protocol import (
    ChatInstance,
    ChatRequest,
    CompletionRequest,
    PredictRequest,
    request_format,
)
from serving.request_body import parse_as, read_json


async def health(request: Request) -> Response:
    """200 once the engine has loaded and served its warm-up request; 503 while loading, draining or dead."""
    state = request.app.state
    if state.phase is Phase.READY and state.engine is not None and state.engine.errored:
        state.phase = Phase.FAILED
    status = 200 if state.phase is Phase.READY else 503
    body: dict[str, Any] = {"status": state.phase.value}
    if state.failure:
        body["error"] = state.failure
    return json_response(body, status)


async def predict(request: Request) -> Response:
    """The Vertex envelope, or an OpenAI body forwarded as-is by rawPredict/streamRawPredict."""
    body = await read_json(request)
    kind = request_format(body)
    if kind == "chat":
        body.pop("@requestFormat", None)
        return await run_chat(request, parse_as(ChatRequest, body))
    if kind == "completion":
        body.pop("@requestFormat", None)
        return await run_completion(request, parse_as(CompletionRequest, body))
    if kind is None:
        raise BadRequest(
            'the body needs "instances" (Vertex predict), "messages" (chat completion) '
            'or "prompt" (completion)'
        )
    envelope = parse_as(PredictRequest, body)
    settings = request.app.state.settings
    if len(envelope.instances) > settings.max_instances:
        raise BadRequest(
            f"{len(envelope.instances)} instances in one request; at most "
            f"{settings.max_instances} are allowed",
            param="instances",
        )
    generator: Generator = request.app.state.generator
    sampling = envelope.parameters
    runs = []
    for instance in envelope.instances:
        if isinstance(instance, ChatInstance):
            ids = generator.chat_ids(instance.messages)
        else:
            ids = generator.prompt_ids(instance if isinstance(instance, str) else instance.prompt)
        runs.append((ids, generator.params(sampling, len(ids), sampling.max_tokens, False)))
    # Every instance goes to the engine at once, so they share its batches.
    results = await unless_disconnected(request, generator.complete_all(runs))
    metrics = request.app.state.metrics
    metrics.prompt_tokens.inc(sum(r.prompt_tokens for r in results))
    metrics.completion_tokens.inc(sum(r.completion_tokens for r in results))
    response: dict[str, Any] = {"predictions": [_prediction(r) for r in results]}
    if settings.vertex.deployed_model_id:
        response["deployedModelId"] = settings.vertex.deployed_model_id
    return json_response(response)


def _prediction(result: Completion) -> dict[str, Any]:
    return {
        "choices": [
            {"index": c.index, "text": c.text, "finish_reason": c.finish_reason}
            for c in result.choices
        ],
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
        },
    }


def add_routes(app: FastAPI) -> None:
    """Health and predict live where AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE say."""
    vertex = app.state.settings.vertex
    app.add_api_route(vertex.health_route, health, methods=["GET"])
    app.add_api_route(vertex.predict_route, predict, methods=["POST"])
