"""The Cloud Monitoring adapter: when each deployed model last served a prediction, in ONE query.

The sweep asks once per run (not once per endpoint): `prediction_count` for every endpoint over the
longest idle TTL, summed per (endpoint, deployed model) per alignment step. Each deployment's own
window is applied afterwards, in pure code, from the returned last-traffic times.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Protocol

from modeldrop.google_errors import translate

if TYPE_CHECKING:
    from google.cloud.monitoring_v3 import MetricServiceClient

PREDICTION_COUNT = "aiplatform.googleapis.com/prediction/online/prediction_count"
ENDPOINT_RESOURCE = "aiplatform.googleapis.com/Endpoint"
STEP = timedelta(seconds=60)


class Monitoring(Protocol):
    def last_predictions(self, since: datetime, until: datetime) -> dict[tuple[str, str], datetime]:
        """(endpoint id, deployed model id) -> end of the latest step with predictions in [since, until]."""
        ...


@cache
def _client(api_endpoint: str | None) -> MetricServiceClient:
    from google.api_core.client_options import ClientOptions
    from google.cloud.monitoring_v3 import MetricServiceClient

    if api_endpoint is None:
        return MetricServiceClient(transport="rest")
    credentials = None
    if api_endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return MetricServiceClient(
        client_options=ClientOptions(api_endpoint=api_endpoint),
        transport="rest",
        credentials=credentials,
    )


class CloudMonitoring:
    """Monitoring over the monitoring_v3 REST client."""

    def __init__(
        self, project: str, api_endpoint: str | None = None, step: timedelta = STEP
    ) -> None:
        self._project = project
        self._api_endpoint = api_endpoint
        self._step = step

    def last_predictions(self, since: datetime, until: datetime) -> dict[tuple[str, str], datetime]:
        from google.cloud import monitoring_v3 as m

        request = m.ListTimeSeriesRequest(
            name=f"projects/{self._project}",
            filter=f'metric.type = "{PREDICTION_COUNT}" AND resource.type = "{ENDPOINT_RESOURCE}"',
            interval=m.TimeInterval(start_time=since, end_time=until),
            aggregation=m.Aggregation(
                alignment_period={"seconds": int(self._step.total_seconds())},
                per_series_aligner=m.Aggregation.Aligner.ALIGN_SUM,
                cross_series_reducer=m.Aggregation.Reducer.REDUCE_SUM,
                group_by_fields=["resource.label.endpoint_id", "metric.label.deployed_model_id"],
            ),
            view=m.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )
        last: dict[tuple[str, str], datetime] = {}
        try:
            for series in _client(self._api_endpoint).list_time_series(request=request):
                key = (
                    str(series.resource.labels.get("endpoint_id", "")),
                    str(series.metric.labels.get("deployed_model_id", "")),
                )
                for point in series.points:
                    value = point.value.int64_value or point.value.double_value
                    if not key[1] or not value:
                        continue
                    end = _utc(point.interval.end_time)
                    if key not in last or end > last[key]:
                        last[key] = end
        except Exception as error:
            raise translate(error, "reading prediction_count") from error
        return last


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
