"""Online prediction: predict, rawPredict, streamRawPredict and the OpenAI paths, routed by traffic split
(a dedicated endpoint's on its dedicated DNS only, played by the Host header)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from local.vertex import dedicated, jsonbody, naming, traffic
from local.vertex.app import Emulator, emulator, fault
from local.vertex.deployments import Deployment
from local.vertex.errors import ApiError, invalid

router = APIRouter()
ENDPOINT = "/v1/projects/{project}/locations/{location}/endpoints/{endpoint}"
# What a container's HTTP error becomes when predict wraps it in Google's error JSON: a client
# error stays a client error with the container's code (issue 14 class 6: a 413 became a 500).
_STATUS_OF = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_PASSED_HEADERS = ("content-type", "cache-control")


def on_its_host(request: Request, project: str, location: str, endpoint: str) -> None:
    """A dedicated endpoint is served on its dedicated DNS only, played by the Host header
    (docs/vertex-fidelity.md row 82); checked before the body is read or a scale-up starts."""
    state = emulator(request)
    found = state.store.endpoints.get(f"{naming.location(project, location)}/endpoints/{endpoint}")
    if found is not None:  # unknown: the route's own 404
        dedicated.check_host(found, request.headers.get("host", ""), state.settings.fidelity)


def _checks(method: str) -> list[Any]:
    """A prediction route's dependencies: the method's injected faults, then its host."""
    return [Depends(fault(method)), Depends(on_its_host)]


def _pick(state: Emulator, project: str, location: str, endpoint_id: str, route: str) -> Deployment:
    """The deployment this request goes to, drawn by the split; counted if `route` counts."""
    name = f"{naming.location(project, location)}/endpoints/{endpoint_id}"
    endpoint = state.endpoints.get(name)
    deployed_model_id = traffic.route(endpoint.traffic_split, state.routing)
    # A scale-to-zero model at zero replicas answers 429 and starts scaling up.
    state.rollout.scaler.request(f"{name}/deployedModels/{deployed_model_id}")
    deployment = state.rollout.ready(name, deployed_model_id)
    if route in state.settings.fidelity.counted_routes:
        state.counts.record(name, deployed_model_id)
    return deployment


def status_of(code: int) -> str:
    """The canonical status of a container's HTTP error code (4xx stay client errors)."""
    if code in _STATUS_OF:
        return _STATUS_OF[code]
    return "FAILED_PRECONDITION" if 400 <= code < 500 else "INTERNAL"


async def _body(state: Emulator, request: Request) -> bytes:
    """The raw body, refused when over the predict size limit (faithful: 1.5 MB)."""
    raw = await request.body()
    jsonbody.check_size(raw, state.settings.fidelity.predict_max_bytes)
    return raw


def _headers(deployment: Deployment) -> dict[str, str]:
    return {
        "X-Vertex-AI-Endpoint-Id": deployment.spec.endpoint_id,
        "X-Vertex-AI-Deployed-Model-Id": deployment.spec.deployed_model_id,
    }


async def _forward(
    state: Emulator, deployment: Deployment, path: str, request: Request
) -> Response:
    """Send the raw body to the container; stream its answer back as it comes (SSE included)."""
    upstream = state.http.build_request(
        "POST",
        deployment.base_url + path,
        content=await _body(state, request),
        headers={"content-type": request.headers.get("content-type", "application/json")},
    )
    try:
        response = await state.http.send(upstream, stream=True)
    except httpx.HTTPError as error:
        raise ApiError("UNAVAILABLE", f"The model server did not answer: {error}.") from error
    headers = {k: v for k, v in response.headers.items() if k.lower() in _PASSED_HEADERS}

    async def relay() -> AsyncIterator[bytes]:
        # Closing in `finally` frees the upstream connection even when the client hangs up.
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        finally:
            await response.aclose()

    return StreamingResponse(
        relay(), status_code=response.status_code, headers={**headers, **_headers(deployment)}
    )


@router.post(ENDPOINT + ":predict", dependencies=_checks("Predict"))
async def predict(request: Request, project: str, location: str, endpoint: str) -> dict[str, Any]:
    state = emulator(request)
    fidelity = state.settings.fidelity
    raw = await _body(state, request)
    body = jsonbody.loads(raw, fidelity.json_max_depth, fidelity.json_max_bytes) if raw else None
    if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
        raise invalid('The request must be {"instances": [...], "parameters": {...}}.')
    deployment = _pick(state, project, location, endpoint, "predict")
    try:
        response = await state.http.post(deployment.base_url + deployment.predict_route, json=body)
    except httpx.HTTPError as error:
        raise ApiError("UNAVAILABLE", f"The model server did not answer: {error}.") from error
    if response.status_code != 200:
        code = response.status_code
        raise ApiError(
            status_of(code),
            f"The model server answered {code}: {response.text[:2000]}",
            http_code=code if 400 <= code < 500 else None,
        )
    try:
        answer = response.json()
    except json.JSONDecodeError as error:
        raise ApiError(
            "INTERNAL", f"The model server answered non-JSON: {response.text[:200]}"
        ) from error
    model = deployment.spec.model
    return {
        "predictions": answer.get("predictions", []) if isinstance(answer, dict) else answer,
        "deployedModelId": deployment.spec.deployed_model_id,
        "model": model.name,
        "modelDisplayName": model.display_name,
        "modelVersionId": model.version_id,
    }


@router.post(ENDPOINT + ":rawPredict", dependencies=_checks("RawPredict"))
async def raw_predict(request: Request, project: str, location: str, endpoint: str) -> Response:
    state = emulator(request)
    deployment = _pick(state, project, location, endpoint, "rawPredict")
    return await _forward(state, deployment, deployment.predict_route, request)


@router.post(ENDPOINT + ":streamRawPredict", dependencies=_checks("StreamRawPredict"))
async def stream_raw_predict(
    request: Request, project: str, location: str, endpoint: str
) -> Response:
    state = emulator(request)
    deployment = _pick(state, project, location, endpoint, "streamRawPredict")
    return await _forward(state, deployment, deployment.predict_route, request)


@router.post(ENDPOINT + "/chat/completions", dependencies=_checks("ChatCompletions"))
async def chat_completions(
    request: Request, project: str, location: str, endpoint: str
) -> Response:
    state = emulator(request)
    deployment = _pick(state, project, location, endpoint, "chatCompletions")
    return await _forward(state, deployment, "/v1/chat/completions", request)


@router.post(ENDPOINT + "/completions", dependencies=_checks("Completions"))
async def completions(request: Request, project: str, location: str, endpoint: str) -> Response:
    state = emulator(request)
    deployment = _pick(state, project, location, endpoint, "completions")
    return await _forward(state, deployment, "/v1/completions", request)


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
