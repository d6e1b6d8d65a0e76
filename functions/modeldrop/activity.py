"""The serving container's own activity records: the idle signal that sees every route.

Each replica writes `activity/<endpoint id>/<deployed model id>/<replica>.json` to the state bucket
(serving/activity.py): its last request (any route; a stream counts until it ends) and how many
are in flight. Unlike Monitoring's `prediction_count`, it covers rawPredict, streamRawPredict and
the OpenAI routes, and it is not minutes late.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, ValidationError

from modeldrop.records import Seen
from modeldrop.storage import Storage

log = logging.getLogger(__name__)
PREFIX = "activity/"
# A replica that has not written for this long while claiming requests in flight is gone.
STALE = timedelta(hours=1)


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    endpoint_id: str
    deployed_model_id: str
    last_request_at: datetime | None = None
    in_flight: int = 0
    written_at: datetime


def read(storage: Storage, bucket: str, now: datetime) -> dict[tuple[str, str], Seen]:
    """(endpoint id, deployed model id) -> what its replicas report; a bad record is skipped."""
    found: dict[tuple[str, str], Seen] = {}
    for obj in storage.list_objects(bucket, PREFIX):
        current = storage.read(bucket, obj.name)
        if current is None:
            continue
        try:
            record = _Record.model_validate_json(current.data)
        except ValidationError:
            log.warning("gs://%s/%s is not an activity record; skipped", bucket, obj.name)
            continue
        key = (record.endpoint_id, record.deployed_model_id)
        before = found.get(key, Seen(None, 0))
        fresh = now - record.written_at < STALE
        found[key] = Seen(
            _latest(before.last_request_at, record.last_request_at),
            before.in_flight + (record.in_flight if fresh else 0),
        )
    return found


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max((t for t in (a, b) if t is not None), default=None)


def merged(
    monitoring: Mapping[tuple[str, str], datetime], seen: Mapping[tuple[str, str], Seen]
) -> dict[tuple[str, str], datetime]:
    """The latest request each deployment is known to have served, from either signal."""
    out = dict(monitoring)
    for key, s in seen.items():
        latest = _latest(out.get(key), s.last_request_at)
        if latest is not None:
            out[key] = latest
    return out


GATEWAY_REPLICA = "gateway"


def write_gateway(
    storage: Storage, bucket: str, endpoint_id: str, deployed_model_id: str, at: datetime
) -> None:
    """The gateway's record for one deployment: requests it sent there count as activity, as the
    container's own records do (the sweep reads both alike). One object for every gateway instance:
    each writes the time of its latest request, so the record holds a recent one."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    record = {
        "endpoint_id": endpoint_id,
        "deployed_model_id": deployed_model_id,
        "replica": GATEWAY_REPLICA,
        "last_request_at": stamp,
        "in_flight": 0,
        "written_at": stamp,
    }
    name = f"{PREFIX}{endpoint_id}/{deployed_model_id}/{GATEWAY_REPLICA}.json"
    storage.write(bucket, name, json.dumps(record).encode())
