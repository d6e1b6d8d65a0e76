"""Where the prediction adapter sends a request: the shared host, or a dedicated endpoint's own DNS."""

from __future__ import annotations

from modeldrop.prediction import VertexPrediction, route

DNS = "ep.us-central1-123456789012.prediction.vertexai.goog"
PATH = "/v1/projects/p/locations/us-central1/endpoints/ep:rawPredict"


def test_a_shared_endpoint_goes_to_the_regional_host() -> None:
    """No dedicated DNS: Vertex's regional API host (or the emulator's URL), no extra header."""
    google = VertexPrediction("p", "us-central1")
    assert google.route("ep", "rawPredict") == (
        f"https://us-central1-aiplatform.googleapis.com{PATH}",
        {},
    )
    assert route("http://127.0.0.1:9/", PATH) == (f"http://127.0.0.1:9{PATH}", {})


def test_a_dedicated_endpoint_goes_to_its_dns_or_to_the_emulator_with_its_dns_as_host() -> None:
    """Google: https://{dns}/v1/projects/P/locations/R/endpoints/E:method; the emulator (http://):
    its own URL with `Host: {dns}`."""
    google = VertexPrediction("p", "us-central1")
    assert google.route("ep", "rawPredict", DNS) == (f"https://{DNS}{PATH}", {})
    local = VertexPrediction("p", "us-central1", "http://127.0.0.1:9")
    assert local.route("ep", "rawPredict", DNS) == (f"http://127.0.0.1:9{PATH}", {"host": DNS})
