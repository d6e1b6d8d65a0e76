"""The Cloud Monitoring subset: projects.timeSeries.list over prediction_count."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request

from local.vertex import listing
from local.vertex.app import emulator, fault, page_size
from local.vertex.monitoring import Query

router = APIRouter()


@router.get("/v3/projects/{project}/timeSeries", dependencies=[Depends(fault("ListTimeSeries"))])
async def list_time_series(request: Request, project: str) -> dict[str, Any]:
    query = Query.parse(request.query_params.multi_items())
    series = emulator(request).counts.query(project, query)
    params = request.query_params
    chunk, token = listing.page(series, page_size(request), params.get("pageToken"))
    answer: dict[str, Any] = {"timeSeries": chunk, "unit": "1"}
    if token:
        answer["nextPageToken"] = token
    return answer


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
