"""The emulator's own routes, outside Vertex's paths: readiness, faults and deployments."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request

from local.vertex.app import emulator, parse
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


def attach_router(app: FastAPI) -> None:
    app.include_router(router)
    app.add_api_route("/healthz", healthz, methods=["GET"])
