"""prediction_count: counted at the predict proxy, read back with projects.timeSeries.list."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from local.processes import stop
from local.vertex.errors import ApiError
from local.vertex.monitoring import METRIC, PredictionCounts, Query
from local.vertex.testing import Running, launch

FILTER = f'metric.type = "{METRIC}" AND resource.type = "aiplatform.googleapis.com/Endpoint"'
T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
ENDPOINT = "projects/p/locations/us-central1/endpoints/{}"


def stamp(when: datetime | float) -> str:
    moment = when if isinstance(when, datetime) else datetime.fromtimestamp(when, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def params(start: float, end: float, **extra: Any) -> list[tuple[str, str]]:
    pairs = [
        ("filter", FILTER),
        ("interval.startTime", stamp(start)),
        ("interval.endTime", stamp(end)),
    ]
    return pairs + [
        (k, v)
        for k, values in extra.items()
        for v in (values if isinstance(values, list) else [values])
    ]


def sums(series: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    return {
        (
            s["resource"]["labels"].get("endpoint_id", ""),
            s["metric"]["labels"].get("deployed_model_id", ""),
        ): sum(int(p["value"]["int64Value"]) for p in s["points"])
        for s in series
    }


@pytest.fixture(scope="module")
def vertex(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = launch(tmp_path_factory.mktemp("vertex-monitoring"))
    try:
        yield running
    finally:
        stop(running.child)


@pytest.mark.stack
def test_one_query_over_all_endpoints_groups_by_deployed_model(vertex: Running) -> None:
    """One timeSeries.list over every endpoint returns each deployed model's predictions; a filter narrows it."""
    first_model, first = vertex.echo_model("counted-a")
    second_model, second = vertex.echo_model("counted-b")
    first_id = vertex.deploy(first_model, first)
    second_id = vertex.deploy(second_model, second)
    for _ in range(3):
        vertex.call("POST", f"/v1/{first}:predict", json={"instances": [1]})
    vertex.call("POST", f"/v1/{second}:rawPredict", json={"prompt": "x"})
    vertex.call("POST", f"/v1/{second}/chat/completions", json={"messages": []})

    now = datetime.now(UTC)
    grouped = params(
        (now - timedelta(minutes=10)).timestamp(),
        (now + timedelta(seconds=1)).timestamp(),
        **{
            "aggregation.alignmentPeriod": "60s",
            "aggregation.perSeriesAligner": "14",
            "aggregation.crossSeriesReducer": "4",
            "aggregation.groupByFields": [
                "resource.label.endpoint_id",
                "metric.label.deployed_model_id",
            ],
            "view": "0",
        },
    )
    url = f"{vertex.url}/v3/projects/modeldrop-test/timeSeries"
    every = httpx.get(url, params=grouped).json()["timeSeries"]
    assert sums(every) == {("counted-a", first_id): 3, ("counted-b", second_id): 2}

    narrowed = [
        (k, v.replace(FILTER, FILTER + ' AND resource.labels.endpoint_id = "counted-b"'))
        for k, v in grouped
    ]
    assert sums(httpx.get(url, params=narrowed).json()["timeSeries"]) == {
        ("counted-b", second_id): 2
    }
    earlier = params(T0, T0 + 60)
    assert httpx.get(url, params=earlier).json()["timeSeries"] == []
    assert (
        httpx.get(url.replace("modeldrop-test", "other"), params=grouped).json()["timeSeries"] == []
    )


@pytest.mark.stack
@pytest.mark.timeout(60)
def test_concurrent_predictions_are_all_served_and_counted(vertex: Running) -> None:
    """64 predictions, 16 at a time, split 50/50 over two deployed models: all answer, all are counted."""
    import asyncio

    model, endpoint = vertex.echo_model("busy")
    first = vertex.deploy(model, endpoint)
    body = {
        "deployedModel": {
            "model": model,
            "dedicatedResources": {
                "machineSpec": {"machineType": "n1-standard-4"},
                "minReplicaCount": 1,
            },
        },
        "trafficSplit": {"0": 50, first: 50},
    }
    second = vertex.wait_operation(
        vertex.call("POST", f"/v1/{endpoint}:deployModel", json=body)["name"]
    )["response"]["deployedModel"]["id"]

    async def load() -> list[str]:
        limit = asyncio.Semaphore(16)
        async with httpx.AsyncClient(base_url=vertex.url, timeout=30) as client:

            async def one(i: int) -> str:
                async with limit:
                    response = await client.post(f"/v1/{endpoint}:predict", json={"instances": [i]})
                    response.raise_for_status()
                    return str(response.json()["deployedModelId"])

            return await asyncio.gather(*(one(i) for i in range(64)))

    served = asyncio.run(load())
    assert set(served) == {first, second}
    now = datetime.now(UTC).timestamp()
    query = params(
        now - 600,
        now + 1,
        **{"aggregation.perSeriesAligner": "ALIGN_SUM", "aggregation.alignmentPeriod": "3600s"},
    )
    query = [
        (k, v + ' AND resource.labels.endpoint_id = "busy"' if k == "filter" else v)
        for k, v in query
    ]
    counted = sums(
        httpx.get(f"{vertex.url}/v3/projects/modeldrop-test/timeSeries", params=query).json()[
            "timeSeries"
        ]
    )
    assert counted == {("busy", first): served.count(first), ("busy", second): served.count(second)}


@pytest.mark.stack
def test_a_bad_query_is_invalid_argument(vertex: Running) -> None:
    """An unsupported filter term or a missing endTime answers 400 INVALID_ARGUMENT."""
    url = f"{vertex.url}/v3/projects/modeldrop-test/timeSeries"
    for bad in (
        [("filter", "metric.type > 3"), ("interval.endTime", stamp(T0))],
        [("filter", FILTER)],
    ):
        response = httpx.get(url, params=bad)
        assert response.status_code == 400
        assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_aligned_windows_end_at_end_time_and_step_back() -> None:
    """ALIGN_SUM windows end at endTime and step back by the period; each count lands in its window."""
    counts = PredictionCounts()
    for offset in (1, 2, 70, 130):
        counts.record(ENDPOINT.format("e"), "7", at=T0 + offset)
    query = Query.parse(
        params(
            T0,
            T0 + 180,
            **{"aggregation.alignmentPeriod": "60s", "aggregation.perSeriesAligner": "ALIGN_SUM"},
        )
    )
    [series] = counts.query("p", query)
    ends = {p["interval"]["endTime"]: int(p["value"]["int64Value"]) for p in series["points"]}
    assert ends == {
        stamp(T0 + 180).replace("Z", ".000000Z"): 1,
        stamp(T0 + 120).replace("Z", ".000000Z"): 1,
        stamp(T0 + 60).replace("Z", ".000000Z"): 2,
    }
    assert series["resource"]["labels"] == {
        "resource_container": "p",
        "location": "us-central1",
        "endpoint_id": "e",
    }


def test_reducing_without_group_by_sums_everything() -> None:
    """REDUCE_SUM without groupByFields gives one series summing every deployed model."""
    counts = PredictionCounts()
    counts.record(ENDPOINT.format("a"), "1", at=T0 + 5)
    counts.record(ENDPOINT.format("b"), "2", at=T0 + 6)
    query = Query.parse(
        params(
            T0,
            T0 + 60,
            **{
                "aggregation.perSeriesAligner": "ALIGN_DELTA",
                "aggregation.crossSeriesReducer": "REDUCE_SUM",
            },
        )
    )
    assert sums(counts.query("p", query)) == {("", ""): 2}


def test_counts_survive_in_their_log(tmp_path: Any) -> None:
    """Counts appended to the log are read back by a new counter (an emulator restart)."""
    log = tmp_path / "counts.log"
    PredictionCounts(log).record(ENDPOINT.format("e"), "9", at=T0 + 1)
    query = Query.parse(params(T0, T0 + 60))
    assert sums(PredictionCounts(log).query("p", query)) == {("e", "9"): 1}


def test_unsupported_aligners_are_refused() -> None:
    """An aligner the emulator does not implement is refused, naming the supported ones."""
    with pytest.raises(ApiError, match="ALIGN_SUM"):
        Query.parse(params(T0, T0 + 60, **{"aggregation.perSeriesAligner": "ALIGN_PERCENTILE_99"}))
