"""The Vertex AI online prediction adapter: predict, rawPredict and streamRawPredict over HTTP.

The GAPIC PredictionServiceClient is not used: its REST transport reads a server stream as a JSON
array of HttpBody messages, while streamRawPredict answers the container's own server-sent events,
which the gateway passes through chunk by chunk. The request goes where the CLI sends it
(`{api}/v1/projects/P/locations/R/endpoints/E:method`, or a dedicated endpoint's own host, see
`route`), with the same credentials as the other adapters (application default credentials; none
against the local emulator).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from modeldrop.errors import TransientError

if TYPE_CHECKING:
    import requests

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
CONNECT_TIMEOUT_S = 10.0
# One prediction may stream for as long as the function may run (gen2 HTTP: up to 3600 s).
READ_TIMEOUT_S = 3600.0
POOL = 256  # connections kept per host: one per request the gateway serves at once
HOSTS = 64  # hosts whose pools are kept: the shared one and each dedicated endpoint's
_PASSED = ("content-type", "cache-control", "x-vertex-ai-deployed-model-id")


@dataclass
class Answer:
    """Vertex's answer, its body not read yet (stream it with `chunks`, or take `text`)."""

    status: int
    headers: dict[str, str]
    _response: Any

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives, chunk by chunk; the connection is released at the end."""
        try:
            yield from self._response.iter_content(chunk_size=None)
        finally:
            self._response.close()

    def text(self) -> str:
        try:
            return str(self._response.text)
        finally:
            self._response.close()

    def close(self) -> None:
        self._response.close()


class _Held:
    """A body already in hand, read like a response's."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.text = data.decode(errors="replace")

    def iter_content(self, chunk_size: int | None = None) -> Iterator[bytes]:
        yield self._data

    def close(self) -> None:
        pass


def answered(status: int, body: bytes, content_type: str = "application/json") -> Answer:
    """An answer made here (a refusal Vertex's own answer stands for), read like Vertex's."""
    return Answer(status, {"content-type": content_type}, _Held(body))


class Prediction(Protocol):
    def call(self, endpoint_id: str, method: str, body: bytes, dedicated_dns: str = "") -> Answer:
        """POST `body` to the endpoint's `:method` (on `dedicated_dns` when it has one); the
        answer, whatever its status."""
        ...


def route(api_base: str, path: str, dedicated_dns: str = "") -> tuple[str, dict[str, str]]:
    """The URL and extra headers of a prediction on `path` (`/v1/projects/.../endpoints/E:method`).

    A dedicated endpoint is served on its own DNS only: `Endpoint.dedicated_endpoint_enabled`
    (aiplatform v1 `endpoint.proto`): "Once you enabled dedicated endpoint, you won't be able to
    send request to the shared DNS {region}-aiplatform.googleapis.com"; the SDK sends to
    `https://{dedicated_endpoint_dns}/v1/{resource_name}:rawPredict` (`google/cloud/aiplatform/
    models.py`, `Endpoint.raw_predict(use_dedicated_endpoint=True)`). Against the local emulator
    (an `http://` API endpoint) the DNS is played by the Host header on the emulator's own URL.
    """
    base = api_base.rstrip("/")
    if not dedicated_dns:
        return base + path, {}
    if base.startswith("http://"):
        return base + path, {"host": dedicated_dns}
    return f"https://{dedicated_dns}{path}", {}


@cache
def _session(api_endpoint: str) -> requests.Session:
    import requests
    from requests.adapters import HTTPAdapter

    if api_endpoint.startswith("http://"):
        session = requests.Session()  # the local emulator: no Google credentials needed
    else:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        credentials, _ = google.auth.default(scopes=[SCOPE])  # type: ignore[no-untyped-call]
        session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
    adapter = HTTPAdapter(pool_connections=HOSTS, pool_maxsize=POOL)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class VertexPrediction:
    """Prediction over Vertex's REST API, in one project and region."""

    def __init__(self, project: str, region: str, api_endpoint: str | None = None) -> None:
        self._base = (api_endpoint or f"https://{region}-aiplatform.googleapis.com").rstrip("/")
        self._location = f"projects/{project}/locations/{region}"

    def route(
        self, endpoint_id: str, method: str, dedicated_dns: str = ""
    ) -> tuple[str, dict[str, str]]:
        path = f"/v1/{self._location}/endpoints/{endpoint_id}:{method}"
        return route(self._base, path, dedicated_dns)

    def call(self, endpoint_id: str, method: str, body: bytes, dedicated_dns: str = "") -> Answer:
        url, headers = self.route(endpoint_id, method, dedicated_dns)
        try:
            # One session for every host: AuthorizedSession adds the same token to each.
            response = _session(self._base).post(
                url,
                data=body,
                headers={"content-type": "application/json", **headers},
                stream=True,
                timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
            )
        except Exception as error:
            raise TransientError(f"calling {url}: {error}") from error
        headers = {k.lower(): v for k, v in response.headers.items() if k.lower() in _PASSED}
        return Answer(response.status_code, headers, response)
