"""The Cloud Monitoring adapter: when each deployed model last served a prediction, in ONE query.

The sweep asks once per run (not once per endpoint): `prediction_count` for every endpoint over the
longest idle TTL, summed per (endpoint, deployed model) per alignment step. Each deployment's own
window is applied afterwards, in pure code, from the returned last-traffic times.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from modeldrop.errors import ModeldropError
from modeldrop.google_errors import translate

if TYPE_CHECKING:
    import requests

PREDICTION_COUNT = "aiplatform.googleapis.com/prediction/online/prediction_count"
ENDPOINT_RESOURCE = "aiplatform.googleapis.com/Endpoint"
STEP = timedelta(seconds=60)
DEFAULT_ENDPOINT = "https://monitoring.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/monitoring.read"
TIMEOUT_S = 30.0


class Monitoring(Protocol):
    def last_predictions(self, since: datetime, until: datetime) -> dict[tuple[str, str], datetime]:
        """(endpoint id, deployed model id) -> end of the latest step with predictions in [since, until]."""
        ...


@cache
def _session(api_endpoint: str | None) -> requests.Session:
    import requests

    if api_endpoint is not None and api_endpoint.startswith("http://"):
        return requests.Session()  # a local emulator: no Google credentials needed
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=[SCOPE])  # type: ignore[no-untyped-call]
    return AuthorizedSession(credentials)  # type: ignore[no-untyped-call]


class CloudMonitoring:
    """Monitoring's timeSeries.list over REST (the monitoring_v3 GAPIC client has no REST transport)."""

    def __init__(
        self, project: str, api_endpoint: str | None = None, step: timedelta = STEP
    ) -> None:
        self._project = project
        self._api_endpoint = api_endpoint
        self._base = (api_endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self._step = step

    def last_predictions(self, since: datetime, until: datetime) -> dict[tuple[str, str], datetime]:
        params: dict[str, Any] = {
            "filter": f'metric.type = "{PREDICTION_COUNT}" AND resource.type = "{ENDPOINT_RESOURCE}"',
            "interval.startTime": _rfc3339(since),
            "interval.endTime": _rfc3339(until),
            "aggregation.alignmentPeriod": f"{int(self._step.total_seconds())}s",
            "aggregation.perSeriesAligner": "ALIGN_SUM",
            "aggregation.crossSeriesReducer": "REDUCE_SUM",
            "aggregation.groupByFields": [
                "resource.label.endpoint_id",
                "metric.label.deployed_model_id",
            ],
            "view": "FULL",
            "pageSize": 1000,
        }
        url = f"{self._base}/v3/projects/{self._project}/timeSeries"
        last: dict[tuple[str, str], datetime] = {}
        try:
            while True:
                response = _session(self._api_endpoint).get(url, params=params, timeout=TIMEOUT_S)
                if response.status_code != 200:
                    raise _http_error(response.status_code, response.text)
                page = response.json()
                for series in page.get("timeSeries", []):
                    _fold(series, last)
                token = page.get("nextPageToken")
                if not token:
                    return last
                params["pageToken"] = token
        except ModeldropError:
            raise
        except Exception as error:
            raise translate(error, "reading prediction_count") from error


def _fold(series: dict[str, Any], last: dict[tuple[str, str], datetime]) -> None:
    key = (
        str(series.get("resource", {}).get("labels", {}).get("endpoint_id", "")),
        str(series.get("metric", {}).get("labels", {}).get("deployed_model_id", "")),
    )
    if not key[1]:
        return
    for point in series.get("points", []):
        value = point.get("value", {})
        if not float(value.get("int64Value") or value.get("doubleValue") or 0):
            continue
        end = datetime.fromisoformat(point["interval"]["endTime"].replace("Z", "+00:00"))
        if key not in last or end > last[key]:
            last[key] = end


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _http_error(status: int, text: str) -> ModeldropError:
    from google.api_core.exceptions import from_http_status

    error = from_http_status(status, text[:500])  # type: ignore[no-untyped-call]
    return translate(error, "reading prediction_count")
