"""The Vertex AI online prediction adapter: predict, rawPredict and streamRawPredict over HTTP.

The GAPIC PredictionServiceClient is not used: its REST transport reads a server stream as a JSON
array of HttpBody messages, while streamRawPredict answers the container's own server-sent events,
which the gateway passes through chunk by chunk. The request goes where the CLI sends it
(`{api}/v1/projects/P/locations/R/endpoints/E:method`), with the same credentials as the other
adapters (application default credentials; none against the local emulator).
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
    def call(self, endpoint_id: str, method: str, body: bytes) -> Answer:
        """POST `body` to the endpoint's `:method`; the answer, whatever its status."""
        ...


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
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class VertexPrediction:
    """Prediction over Vertex's REST API, in one project and region."""

    def __init__(self, project: str, region: str, api_endpoint: str | None = None) -> None:
        self._base = (api_endpoint or f"https://{region}-aiplatform.googleapis.com").rstrip("/")
        self._location = f"projects/{project}/locations/{region}"

    def url(self, endpoint_id: str, method: str) -> str:
        return f"{self._base}/v1/{self._location}/endpoints/{endpoint_id}:{method}"

    def call(self, endpoint_id: str, method: str, body: bytes) -> Answer:
        url = self.url(endpoint_id, method)
        try:
            response = _session(self._base).post(
                url,
                data=body,
                headers={"content-type": "application/json"},
                stream=True,
                timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
            )
        except Exception as error:
            raise TransientError(f"calling {url}: {error}") from error
        headers = {k.lower(): v for k, v in response.headers.items() if k.lower() in _PASSED}
        return Answer(response.status_code, headers, response)
