"""The emulator's own routes, outside Vertex's paths: readiness, faults and deployments."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

from fastapi import APIRouter, FastAPI, Request

from local.vertex.app import emulator, parse
from local.vertex.errors import not_found
from local.vertex.faults import FaultConfig

router = APIRouter(prefix="/emulator")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 once the emulator serves requests (state loaded, deployments relaunching)."""
    return {"status": "ok"}


@router.get("/faults")
async def get_faults(request: Request) -> dict[str, Any]:
    return emulator(request).faults.config.model_dump(by_alias=True)


@router.put("/faults")
@router.post("/faults")
async def set_faults(request: Request) -> dict[str, Any]:
    """Replace the whole fault configuration (and re-seed the draws)."""
    config = await parse(request, FaultConfig)
    emulator(request).faults.update(config)
    return config.model_dump(by_alias=True)


@router.delete("/faults")
async def clear_faults(request: Request) -> dict[str, Any]:
    emulator(request).faults.update(FaultConfig())
    return FaultConfig().model_dump(by_alias=True)


@router.get("/deployments")
async def list_deployments(request: Request) -> dict[str, Any]:
    """Every deployment process: where it listens, its PID and state, so tests can observe it."""
    running = emulator(request).deployments.running.values()
    return {
        "deployments": [
            {
                "endpoint": d.spec.endpoint,
                "deployedModelId": d.spec.deployed_model_id,
                "pid": d.child.pid,
                "port": d.port,
                "state": d.state.value,
                "message": d.message,
                "healthRoute": d.health_route,
                "predictRoute": d.predict_route,
                "logPath": str(d.child.log_path),
            }
            for d in running
        ]
    }


@router.post("/deployments/{endpoint_id}/{deployed_model_id}:kill")
async def kill_deployment(
    request: Request, endpoint_id: str, deployed_model_id: str
) -> dict[str, Any]:
    """SIGKILL a deployment's process group, as a crash would: the health watch then reports it."""
    for deployment in emulator(request).deployments.running.values():
        spec = deployment.spec
        if (spec.endpoint_id, spec.deployed_model_id) == (endpoint_id, deployed_model_id):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(deployment.child.pid, signal.SIGKILL)
            return {"killed": deployment.child.pid}
    raise not_found("Deployment", f"{endpoint_id}/{deployed_model_id}")


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
    app.add_api_route("/healthz", healthz, methods=["GET"])
