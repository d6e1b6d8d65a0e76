"""Cloud Monitoring's prediction_count: counted at the predict proxy, read back by timeSeries.list."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.vertex.errors import invalid
from local.vertex.fidelity import SAMPLE_PERIOD_S, Fidelity

METRIC = "aiplatform.googleapis.com/prediction/online/prediction_count"
RESOURCE = "aiplatform.googleapis.com/Endpoint"
RAW_PERIOD_S = SAMPLE_PERIOD_S  # Vertex writes prediction_count once a minute.
ALIGNERS = {0: "ALIGN_NONE", 1: "ALIGN_DELTA", 2: "ALIGN_RATE", 14: "ALIGN_SUM"}
REDUCERS = {0: "REDUCE_NONE", 4: "REDUCE_SUM"}
_TERM = re.compile(r'^\s*([\w.]+)\s*=\s*(?:"([^"]*)"|one_of\(([^)]*)\))\s*$')
_FIELDS = {
    "metric.type": "metric.type",
    "resource.type": "resource.type",
    "resource.labels.endpoint_id": "resource.label.endpoint_id",
    "resource.label.endpoint_id": "resource.label.endpoint_id",
    "resource.labels.location": "resource.label.location",
    "resource.label.location": "resource.label.location",
    "resource.labels.resource_container": "resource.label.resource_container",
    "resource.label.resource_container": "resource.label.resource_container",
    "metric.labels.deployed_model_id": "metric.label.deployed_model_id",
    "metric.label.deployed_model_id": "metric.label.deployed_model_id",
}
Key = tuple[str, str, str, str]  # project, location, endpoint id, deployed model id


def parse_time(text: str, what: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError as error:
        raise invalid(f"{what} is not an RFC 3339 timestamp: {text!r}.") from error


def format_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", text.strip())
    if match is None:
        raise invalid(f"aggregation.alignmentPeriod must look like '60s', not {text!r}.")
    return float(match.group(1))


def _enum(value: str, table: dict[int, str], what: str) -> str:
    name = table.get(int(value)) if value.isdigit() else value
    if name not in table.values():
        raise invalid(f"{what} {value!r} is not supported; supported: {sorted(table.values())}.")
    return str(name)


@dataclass(frozen=True)
class Query:
    """One timeSeries.list request, parsed."""

    filters: dict[str, set[str]]
    start: float
    end: float
    aligner: str = "ALIGN_NONE"
    period: float = RAW_PERIOD_S
    reducer: str = "REDUCE_NONE"
    group_by: tuple[str, ...] = ()
    headers_only: bool = False

    @classmethod
    def parse(cls, params: Iterable[tuple[str, str]]) -> Query:
        values: dict[str, list[str]] = defaultdict(list)
        for key, value in params:
            values[key].append(value)
        one = {key: items[-1] for key, items in values.items()}
        if "filter" not in one:
            raise invalid('filter is required, e.g. metric.type = "...".')
        if "interval.endTime" not in one:
            raise invalid("interval.endTime is required.")
        end = parse_time(one["interval.endTime"], "interval.endTime")
        start = parse_time(
            one.get("interval.startTime", one["interval.endTime"]), "interval.startTime"
        )
        if start > end:
            raise invalid("interval.startTime is after interval.endTime.")
        filters: dict[str, set[str]] = {}
        for part in re.split(r"\s+AND\s+", one["filter"].strip()):
            match = _TERM.match(part)
            if match is None or match.group(1) not in _FIELDS:
                raise invalid(
                    f"Unsupported filter term {part!r}; supported: {sorted(set(_FIELDS.values()))} with = or one_of()."
                )
            wanted = (
                {match.group(2)}
                if match.group(2) is not None
                else {v.strip().strip('"') for v in (match.group(3) or "").split(",")}
            )
            filters[_FIELDS[match.group(1)]] = wanted
        if "metric.type" not in filters:
            raise invalid("The filter must name a metric.type.")
        aligner = _enum(one.get("aggregation.perSeriesAligner", "0"), ALIGNERS, "perSeriesAligner")
        reducer = _enum(
            one.get("aggregation.crossSeriesReducer", "0"), REDUCERS, "crossSeriesReducer"
        )
        period = (
            parse_duration(one["aggregation.alignmentPeriod"])
            if "aggregation.alignmentPeriod" in one
            else RAW_PERIOD_S
        )
        if period <= 0:
            raise invalid("aggregation.alignmentPeriod must be positive.")
        return cls(
            filters=filters,
            start=start,
            end=end,
            aligner=aligner,
            period=period,
            reducer=reducer,
            group_by=tuple(_FIELDS.get(f, f) for f in values.get("aggregation.groupByFields", [])),
            headers_only=one.get("view") in {"HEADERS", "1"},
        )


@dataclass
class PredictionCounts:
    """Predictions per (deployed model, second), appended to a log so restarts keep them."""

    path: Path | None = None
    counts: dict[Key, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    fidelity: Fidelity = field(default_factory=Fidelity)

    def __post_init__(self) -> None:
        if self.path is not None and self.path.exists():
            for line in self.path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 5:
                    self._add((parts[1], parts[2], parts[3], parts[4]), int(parts[0]))

    def record(self, endpoint: str, deployed_model_id: str, at: float | None = None) -> None:
        """Count one prediction served by `deployed_model_id` of `endpoint` (a resource name)."""
        _, project, _, location, _, endpoint_id = endpoint.split("/")[:6]
        second = int(at if at is not None else time.time())
        key = (project, location, endpoint_id, deployed_model_id)
        self._add(key, second)
        if self.path is not None:
            with open(self.path, "a") as log:
                log.write(f"{second} {' '.join(key)}\n")

    def _add(self, key: Key, second: int) -> None:
        self.counts[key][second] = self.counts[key].get(second, 0) + 1

    def visible(self, second: int, now: float) -> bool:
        """Faithful: a count shows once its 60 s sample has closed and the ingestion delay passed."""
        if not self.fidelity.metric_sampling:
            return True
        sample_end = (second // RAW_PERIOD_S + 1) * RAW_PERIOD_S
        return now >= sample_end + self.fidelity.ingest_delay_scaled_s

    def query(self, project: str, query: Query, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        if query.filters["metric.type"] != {METRIC}:
            return []
        if "resource.type" in query.filters and RESOURCE not in query.filters["resource.type"]:
            return []
        series: dict[tuple[tuple[str, str], ...], dict[float, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        for key, seconds in self.counts.items():
            labels = _labels(key)
            if key[0] != project or not all(
                labels.get(f) in v
                for f, v in query.filters.items()
                if f.startswith(("resource.label", "metric.label"))
            ):
                continue
            if query.reducer == "REDUCE_SUM":
                labels = {f: v for f, v in labels.items() if f in query.group_by}
            points = series[tuple(sorted(labels.items()))]
            for second, count in seconds.items():
                window = self._window(query, second)
                if window is None or not self.visible(second, now):
                    continue
                # Faithful: an aligned point is reported only for a window that has ended.
                if self.fidelity.metric_sampling and window > now:
                    continue
                points[window] += count
        return [
            self._series(dict(labels), points, query) for labels, points in series.items() if points
        ]

    def _window(self, query: Query, second: int) -> float | None:
        """The end of the window `second` falls in, or None outside the interval."""
        if query.aligner == "ALIGN_NONE":
            if not query.start - RAW_PERIOD_S < second <= query.end:
                return None
            return (second // RAW_PERIOD_S + 1) * RAW_PERIOD_S
        # Aligned windows end at endTime and step back by the alignment period.
        if not query.start - query.period < second <= query.end:
            return None
        steps = int((query.end - second) // query.period)
        return query.end - steps * query.period

    def _series(
        self, labels: dict[str, str], points: dict[float, int], query: Query
    ) -> dict[str, Any]:
        period = RAW_PERIOD_S if query.aligner == "ALIGN_NONE" else query.period
        rate = query.aligner == "ALIGN_RATE"
        out: dict[str, Any] = {
            "metric": {
                "type": METRIC,
                "labels": {
                    k.split(".")[-1]: v for k, v in labels.items() if k.startswith("metric.")
                },
            },
            "resource": {
                "type": RESOURCE,
                "labels": {
                    k.split(".")[-1]: v for k, v in labels.items() if k.startswith("resource.")
                },
            },
            "metricKind": "GAUGE" if rate else "DELTA",
            "valueType": "DOUBLE" if rate else "INT64",
        }
        if not query.headers_only:
            out["points"] = [
                {
                    "interval": {
                        "startTime": format_time(end - period),
                        "endTime": format_time(
                            min(end, query.end) if query.aligner == "ALIGN_NONE" else end
                        ),
                    },
                    "value": {"doubleValue": count / period}
                    if rate
                    else {"int64Value": str(count)},
                }
                for end, count in sorted(points.items(), reverse=True)
            ]
        return out


def _labels(key: Key) -> dict[str, str]:
    project, location, endpoint_id, deployed_model_id = key
    return {
        "resource.label.resource_container": project,
        "resource.label.location": location,
        "resource.label.endpoint_id": endpoint_id,
        "metric.label.deployed_model_id": deployed_model_id,
    }
