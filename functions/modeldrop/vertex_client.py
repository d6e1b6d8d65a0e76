"""The aiplatform_v1 REST clients, built on first use and cached for warm starts, and what the
Model Registry and endpoint halves of the adapter share (resource names, operations).

Only the adapter modules (vertex_client, vertex_models, vertex) import Google's Vertex clients; the
high-level SDK is never imported: it costs seconds of cold start.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from modeldrop.google_errors import translate
from modeldrop.resources import Operation

if TYPE_CHECKING:
    from google.cloud.aiplatform_v1 import EndpointServiceClient, ModelServiceClient
    from google.cloud.aiplatform_v1beta1 import EndpointServiceClient as BetaEndpointClient

PAGE_SIZE = 100


@cache
def _clients(
    region: str, api_endpoint: str | None
) -> tuple[ModelServiceClient, EndpointServiceClient]:
    from google.api_core.client_options import ClientOptions
    from google.cloud.aiplatform_v1 import EndpointServiceClient, ModelServiceClient

    options = ClientOptions(
        api_endpoint=api_endpoint or f"https://{region}-aiplatform.googleapis.com"
    )
    credentials = None
    if api_endpoint and api_endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        # A local emulator needs no Google credentials.
        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return (
        ModelServiceClient(client_options=options, transport="rest", credentials=credentials),
        EndpointServiceClient(client_options=options, transport="rest", credentials=credentials),
    )


@cache
def _beta_endpoints(region: str, api_endpoint: str | None) -> BetaEndpointClient:
    """The v1beta1 endpoint client, only for scale-to-zero deploys (built on their first use)."""
    from google.api_core.client_options import ClientOptions
    from google.cloud.aiplatform_v1beta1 import EndpointServiceClient as BetaClient

    options = ClientOptions(
        api_endpoint=api_endpoint or f"https://{region}-aiplatform.googleapis.com"
    )
    credentials = None
    if api_endpoint and api_endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return BetaClient(client_options=options, transport="rest", credentials=credentials)


class VertexClient:
    """One project and region's clients, resource names and operations."""

    def __init__(self, project: str, region: str, api_endpoint: str | None = None) -> None:
        self._location = f"projects/{project}/locations/{region}"
        self._region = region
        self._api_endpoint = api_endpoint

    @property
    def _models(self) -> ModelServiceClient:
        return _clients(self._region, self._api_endpoint)[0]

    @property
    def _endpoints(self) -> EndpointServiceClient:
        return _clients(self._region, self._api_endpoint)[1]

    @property
    def _beta_endpoints(self) -> BetaEndpointClient:
        return _beta_endpoints(self._region, self._api_endpoint)

    def _model_name(self, model: str) -> str:
        return f"{self._location}/models/{model}"

    def _endpoint_name(self, endpoint_id: str) -> str:
        return f"{self._location}/endpoints/{endpoint_id}"

    def operation(self, name: str) -> Operation:
        from google.api_core.exceptions import NotFound

        try:
            op = self._endpoints.get_operation(request={"name": name})
        except NotFound:
            # Operations expire on Vertex's side: an unknown one has ended, and how is lost.
            return Operation(name=name, done=True, error=f"Vertex no longer knows operation {name}")
        except Exception as error:
            raise translate(error, f"reading operation {name}") from error
        error_text = f"{op.error.message} (code {op.error.code})" if op.HasField("error") else None
        details: dict[str, Any] = {}
        if op.HasField("response"):
            details["response"] = _any_fields(op.response)
        return Operation(name=op.name, done=bool(op.done), error=error_text, details=details)


def _any_fields(message: Any) -> dict[str, Any]:
    """The fields of a packed response (its type may be unknown to the local descriptor pool)."""
    from google.cloud import aiplatform_v1 as v1

    kind = message.type_url.rsplit(".", 1)[-1]
    known: dict[str, Any] = {
        "UploadModelResponse": v1.UploadModelResponse,
        "DeployModelResponse": v1.DeployModelResponse,
    }
    if kind not in known:
        return {}
    parsed = known[kind].deserialize(message.value)
    return dict(type(parsed).to_dict(parsed, preserving_proto_field_name=True))


def time_or_none(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.year > 1970 else None
    return None
