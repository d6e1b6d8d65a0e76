"""`modeldrop predict` and `modeldrop chat`: talk to an endpoint the way any Vertex AI client does."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

from modeldrop.cli.context import EXIT_OK, Context, NotFound, Unreachable, UsageError
from modeldrop.cli.profile import Profile
from modeldrop.errors import ConfigError, PermanentError
from modeldrop.resources import Endpoint

REQUEST_TIMEOUT_S = 300.0
# Through the gateway a request may be held while its endpoint wakes (20 min on Google Cloud).
GATEWAY_TIMEOUT_S = 3600.0


def access_token(profile: Profile) -> str | None:
    """A bearer token for Vertex AI (application default credentials); None for the local stack."""
    if profile.is_local:
        return None
    import google.auth
    import google.auth.transport.requests

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    credentials.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]
    return str(credentials.token)


def _headers(profile: Profile, via_gateway: bool = False) -> dict[str, str]:
    token = gateway_token(profile) if via_gateway else access_token(profile)
    return {"authorization": f"Bearer {token}"} if token else {}


def gateway_url(profile: Profile) -> str:
    """The front door's base URL; ConfigError when the profile names none."""
    if not profile.gateway_url:
        raise ConfigError(
            f"profile {profile.name!r} names no gateway: set MODELDROP_GATEWAY_URL (terraform "
            "output gateway_url) or gateway_url in the profile"
        )
    return profile.gateway_url.rstrip("/")


def gateway_token(profile: Profile) -> str | None:
    """An ID token for the gateway's Cloud Run service (run.invoker checks one); None locally."""
    if profile.is_local:
        return None
    import google.auth.transport.requests
    import google.oauth2.id_token

    request = google.auth.transport.requests.Request()  # type: ignore[no-untyped-call]
    try:
        token = google.oauth2.id_token.fetch_id_token(request, gateway_url(profile))  # type: ignore[no-untyped-call]
    except Exception as error:
        raise ConfigError(
            f"no ID token for the gateway ({error}): run as a service account, or "
            "`gcloud auth application-default login --impersonate-service-account ...`"
        ) from error
    return str(token)


def predict_request(
    prompts: list[str], max_tokens: int, temperature: float | None
) -> dict[str, Any]:
    """Vertex's envelope: one instance per prompt, sampling parameters beside them."""
    parameters: dict[str, Any] = {"max_tokens": max_tokens}
    if temperature is not None:
        parameters["temperature"] = temperature
    return {"instances": [{"prompt": p} for p in prompts], "parameters": parameters}


def call_predict(
    profile: Profile, endpoint: str, body: dict[str, Any], via_gateway: bool = False
) -> dict[str, Any]:
    """POST `body` to the endpoint's :predict (directly, or through the gateway, which wakes a
    sleeping endpoint first); the JSON answer, or an error naming the message."""
    import httpx

    extra: dict[str, str] = {}
    if via_gateway:
        url, timeout = f"{gateway_url(profile)}/v1/endpoints/{endpoint}:predict", GATEWAY_TIMEOUT_S
    else:
        base, extra = direct_route(profile, lookup(profile, endpoint))
        url, timeout = base + ":predict", REQUEST_TIMEOUT_S
    try:
        headers = {**_headers(profile, via_gateway), **extra}
        response = httpx.post(url, json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as error:
        raise Unreachable(f"{url}: {error}") from error
    if response.status_code == 404:
        raise NotFound(f"endpoint {endpoint!r} not found: {_message(response)}")
    if response.status_code >= 400:
        raise PermanentError(
            f"predict failed with HTTP {response.status_code}: {_message(response)}"
        )
    answer: dict[str, Any] = response.json()
    return answer


def _message(response: Any) -> str:
    try:
        error = response.json().get("error", {})
        return str(error.get("message") or error or response.text)
    except ValueError:
        return str(response.text[:500])


def lookup(profile: Profile, endpoint: str) -> Endpoint:
    """The endpoint as Vertex reports it (GetEndpoint): its deployments and, for a dedicated one,
    the DNS its predictions must go to. Vertex's DNS embeds an id that can't be derived from the
    project, so a client reads it; a dedicated endpoint whose DNS is still empty is read once more,
    as the SDK's `Endpoint.dedicated_endpoint_dns` does (`google/cloud/aiplatform/models.py`)."""
    from modeldrop.vertex import GapicVertex

    vertex = GapicVertex(profile.project, profile.region, profile.vertex_api_endpoint)
    found = vertex.endpoint(endpoint)
    if found is not None and found.dedicated and not found.dedicated_dns:
        found = vertex.endpoint(endpoint)
    if found is None:
        raise NotFound(f"endpoint {endpoint!r} not found in {profile.project}/{profile.region}")
    return found


def direct_route(profile: Profile, found: Endpoint) -> tuple[str, dict[str, str]]:
    """The base URL and extra headers of the endpoint's predictions, not through the gateway: the
    shared host, or a dedicated endpoint's own DNS (Vertex refuses it on the shared host)."""
    if found.dedicated and not found.dedicated_dns:
        raise Unreachable(
            f"endpoint {found.id!r} is a dedicated endpoint and Vertex has not published its DNS "
            "yet (Endpoint.dedicated_endpoint_dns): retry in a minute"
        )
    return profile.endpoint_route(found.id, found.dedicated_dns)


def openai_client(
    profile: Profile, endpoint: str, via_gateway: bool = False, found: Endpoint | None = None
) -> Any:
    """The official `openai` client pointed at the endpoint's OpenAI-compatible routes (`found`:
    the endpoint already read, else it is looked up), or at the gateway's (which routes by the
    request's `model`)."""
    import openai

    if via_gateway:
        return openai.OpenAI(
            base_url=gateway_url(profile) + "/v1",
            api_key=gateway_token(profile) or "unused-locally",
            timeout=GATEWAY_TIMEOUT_S,
            max_retries=1,
        )
    base, extra = direct_route(profile, found or lookup(profile, endpoint))
    return openai.OpenAI(
        base_url=base,
        api_key=access_token(profile) or "unused-locally",
        timeout=REQUEST_TIMEOUT_S,
        max_retries=1,
        default_headers=extra or None,
    )


def served_model(profile: Profile, endpoint: str, found: Endpoint | None = None) -> str:
    """The name the endpoint's serving container answers to: its main deployment's model name.

    The OpenAI API names a model in every request; modeldrop registers each version with
    `--served-model-name <model>`, and the endpoint's deployments say which model that is.
    """
    found = found or lookup(profile, endpoint)
    if not found.deployments:
        raise PermanentError(
            f"endpoint {endpoint!r} has nothing deployed: `modeldrop deploy` first"
        )
    main = max(found.deployments, key=lambda d: found.traffic_split.get(d.id, 0))
    return main.model or endpoint


def stream_chat(
    profile: Profile,
    endpoint: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    temperature: float | None,
    model: str | None = None,
    via_gateway: bool = False,
) -> Iterator[str]:
    """The assistant's reply, piece by piece, as the endpoint streams it."""
    import openai

    extra: dict[str, Any] = {} if temperature is None else {"temperature": temperature}
    if via_gateway:
        client = openai_client(profile, endpoint, via_gateway)
        # The gateway routes by `model`: the endpoint, and `:adapter` for an adapter.
        name = f"{endpoint}:{model}" if model else endpoint
    else:
        found = lookup(profile, endpoint)  # one read: the served model and the endpoint's host
        client = openai_client(profile, endpoint, found=found)
        name = model or served_model(profile, endpoint, found)
    try:
        stream = client.chat.completions.create(
            model=name,
            messages=messages,
            max_tokens=max_tokens,
            stream=True,
            **extra,
        )
        for chunk in stream:
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    yield choice.delta.content
    except openai.NotFoundError as error:
        raise NotFound(f"endpoint {endpoint!r} not found: {error}") from error
    except openai.APIConnectionError as error:
        raise Unreachable(f"{client.base_url}: {error}") from error
    except openai.APIStatusError as error:
        raise PermanentError(
            f"chat failed with HTTP {error.status_code}: {error.message}"
        ) from error


def predict(ctx: Context) -> int:
    a = ctx.args
    if a.instances:
        try:
            body = {"instances": json.loads(a.instances)}
        except ValueError as error:
            raise UsageError(f"--instances is not JSON: {error}") from error
        if not isinstance(body["instances"], list):
            raise UsageError("--instances must be a JSON list")
        body["parameters"] = {"max_tokens": a.max_tokens}
    elif a.prompt:
        body = predict_request(a.prompt, a.max_tokens, a.temperature)
    else:
        raise UsageError("give one or more prompts, or --instances JSON")
    answer = call_predict(ctx.profile(), a.endpoint, body, a.via_gateway)
    if a.json:
        ctx.print(json.dumps(answer, indent=2))
    else:
        for prediction in answer.get("predictions", []):
            ctx.print(prediction_text(prediction))
    return EXIT_OK


def prediction_text(prediction: Any) -> str:
    """The generated text of one prediction (completion or chat shaped); JSON for other shapes."""
    if isinstance(prediction, str):
        return prediction
    if isinstance(prediction, dict) and prediction.get("choices"):
        choice = prediction["choices"][0]
        if isinstance(choice, dict):
            text = choice.get("text")
            if text is None and isinstance(choice.get("message"), dict):
                text = choice["message"].get("content")
            if isinstance(text, str):
                return text
    return json.dumps(prediction)


def chat(ctx: Context) -> int:
    a = ctx.args
    text = " ".join(a.message) if a.message else sys.stdin.read()
    if not text.strip():
        raise UsageError("nothing to say: give a message, or pipe one on stdin")
    messages = ([{"role": "system", "content": a.system}] if a.system else []) + [
        {"role": "user", "content": text}
    ]
    pieces = stream_chat(
        ctx.profile(), a.endpoint, messages, a.max_tokens, a.temperature, a.model, a.via_gateway
    )
    for piece in pieces:
        ctx.out.write(piece)
        ctx.out.flush()
    ctx.out.write("\n")
    return EXIT_OK
