"""`modeldrop status`: what Vertex serves, what is in flight, and when idle deployments will go away."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from modeldrop.cli.context import EXIT_OK, Context
from modeldrop.cli.profile import Profile
from modeldrop.cli.table import render
from modeldrop.durations import format_duration
from modeldrop.idle_policy import wakefulness
from modeldrop.labels import MANAGED_FILTER, MODEL, idle_ttl_seconds, keep_warm
from modeldrop.records import OperationRecord

if TYPE_CHECKING:
    from modeldrop.state import StateStore
    from modeldrop.vertex import GapicVertex

DEFAULT_TTL_S = 30 * 60


@dataclass(frozen=True)
class VersionRow:
    model: str
    version_id: str
    aliases: list[str]
    created: str | None


@dataclass(frozen=True)
class DeploymentRow:
    endpoint: str
    deployed_model_id: str
    model: str | None
    version: str | None
    machine: str
    replicas: str
    traffic: int
    idle_ttl: str
    last_prediction: str | None
    teardown_in: str | None  # "keep-warm", "never", or a duration; None when unknown


@dataclass(frozen=True)
class OperationRow:
    request_id: str
    action: str
    endpoint: str
    operation: str | None
    started_at: str
    age: str


def collect(profile: Profile, now: datetime) -> dict[str, Any]:
    """Everything `status` shows, read from Vertex, Cloud Monitoring and the state bucket."""
    from modeldrop.monitoring import CloudMonitoring
    from modeldrop.vertex import GapicVertex

    vertex = GapicVertex(profile.project, profile.region, profile.vertex_api_endpoint)
    endpoints = vertex.list_managed_endpoints(MANAGED_FILTER)
    store = _store(profile)
    records = store.operations() if store else []
    longest = max([idle_ttl_seconds(e.labels, DEFAULT_TTL_S) for e in endpoints] + [DEFAULT_TTL_S])
    last: dict[tuple[str, str], datetime] = {}
    if any(e.deployments for e in endpoints):
        monitoring = CloudMonitoring(profile.project, profile.monitoring_api_endpoint)
        last = monitoring.last_predictions(now - timedelta(seconds=longest), now)
    deployments = []
    for endpoint in endpoints:
        ttl = idle_ttl_seconds(endpoint.labels, DEFAULT_TTL_S)
        for d in endpoint.deployments:
            seen = last.get((endpoint.id, d.id))
            since = max(t for t in (seen, d.create_time, now - timedelta(seconds=longest)) if t)
            if d.scales_to_zero:
                teardown = "Vertex scales to zero"
            elif keep_warm(endpoint.labels):
                teardown = "keep-warm"
            elif ttl == 0:
                teardown = "never"
            else:
                left = (since + timedelta(seconds=ttl) - now).total_seconds()
                teardown = format_duration(max(int(left), 0)) if left > 0 else "due at next sweep"
            deployments.append(
                DeploymentRow(
                    endpoint=endpoint.id,
                    deployed_model_id=d.id,
                    model=d.model or endpoint.labels.get(MODEL),
                    version=d.version,
                    machine=d.machine_type
                    + (
                        f" + {d.accelerator_count}x {d.accelerator_type}"
                        if d.accelerator_type
                        else ""
                    ),
                    replicas=f"{d.min_replicas}-{d.max_replicas}"
                    + (f" ({d.available_replicas} up)" if d.available_replicas is not None else ""),
                    traffic=endpoint.traffic_split.get(d.id, 0),
                    idle_ttl=format_duration(ttl) if ttl else "0",
                    last_prediction=seen.isoformat() if seen else None,
                    teardown_in=teardown,
                )
            )
    return {
        "profile": profile.name,
        "project": profile.project,
        "region": profile.region,
        "models": [asdict(v) for v in _versions(vertex)],
        "endpoints": [
            {
                "endpoint": e.id,
                # asleep / waking / ready / down: derived from Vertex and the teardown records
                "state": wakefulness(
                    e,
                    store.teardown(e.id) if store else None,
                    [r for r in records if r.endpoint == e.id],
                ).value,
                "idle_policy": "scale-to-zero"
                if any(d.scales_to_zero for d in e.deployments)
                else "teardown",
                "deployments": len(e.deployments),
                "traffic_split": e.traffic_split,
                "labels": e.labels,
            }
            for e in endpoints
        ],
        "deployments": [asdict(d) for d in deployments],
        "operations": [asdict(o) for o in _operations(records, now)],
    }


def _store(profile: Profile) -> StateStore | None:
    if not profile.state_bucket:
        return None
    from modeldrop.state import StateStore
    from modeldrop.storage import GcsStorage

    return StateStore(GcsStorage(profile.project), profile.state_bucket)


def _versions(vertex: GapicVertex) -> list[VersionRow]:
    """Managed models and their versions in the Model Registry."""
    return [
        VersionRow(
            model=v.resource.rsplit("/", 1)[-1],
            version_id=v.version_id,
            aliases=list(v.aliases),
            created=v.create_time.isoformat() if v.create_time else None,
        )
        for v in vertex.list_managed_versions(MANAGED_FILTER)
    ]


def _operations(records: list[OperationRecord], now: datetime) -> list[OperationRow]:
    return [
        OperationRow(
            request_id=r.request_id,
            action=r.action,
            endpoint=r.endpoint,
            operation=r.operation,
            started_at=r.started_at.isoformat(),
            age=format_duration(max(int((now - r.started_at).total_seconds()), 0)),
        )
        for r in records
    ]


def status(ctx: Context) -> int:
    profile = ctx.profile()
    report = collect(profile, datetime.now(UTC))
    if ctx.args.json:
        ctx.print(json.dumps(report, indent=2))
        return EXIT_OK
    ctx.print(f"{profile.name}: project {profile.project}, region {profile.region}\n")
    ctx.print("MODELS")
    ctx.print(
        render(
            ["model", "version", "aliases", "created"],
            [
                [v["model"], v["version_id"], ",".join(v["aliases"]), v["created"] or "-"]
                for v in report["models"]
            ],
        )
    )
    ctx.print("\nDEPLOYMENTS")
    ctx.print(
        render(
            [
                "endpoint",
                "id",
                "model",
                "version",
                "machine",
                "replicas",
                "traffic",
                "idle ttl",
                "torn down in",
            ],
            [
                [
                    d["endpoint"],
                    d["deployed_model_id"],
                    d["model"] or "-",
                    d["version"] or "-",
                    d["machine"],
                    d["replicas"],
                    f"{d['traffic']}%",
                    d["idle_ttl"],
                    d["teardown_in"] or "-",
                ]
                for d in report["deployments"]
            ],
        )
    )
    ctx.print("\nENDPOINTS")
    ctx.print(
        render(
            ["endpoint", "state", "idle policy", "deployments"],
            [
                [e["endpoint"], e["state"], e["idle_policy"], str(e["deployments"])]
                for e in report["endpoints"]
            ],
        )
    )
    ctx.print("\nOPERATIONS IN FLIGHT")
    ctx.print(
        render(
            ["request_id", "action", "endpoint", "age", "operation"],
            [
                [
                    o["request_id"],
                    o["action"],
                    o["endpoint"],
                    o["age"],
                    o["operation"] or "(starting)",
                ]
                for o in report["operations"]
            ],
        )
    )
    return EXIT_OK
