"""Liveness and readiness: /health/live and /health/ready, and GET / (KServe's liveness: its
server answers ``{"status": "alive"}`` there, and its SDK's ``is_server_live`` asks it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import ManagerDep

router = APIRouter(tags=["health"])


async def live() -> dict[str, str]:
    return {"status": "alive"}


router.add_api_route("/health/live", live, methods=["GET"], summary="The process is up")
router.add_api_route("/", live, methods=["GET"], summary="The process is up (KServe V1)")


@router.get(
    "/health/ready",
    summary="Every served model is loaded and warmed (503 until then)",
    responses={503: {"description": "Some model is not loaded yet, or failed to load"}},
)
async def ready(manager: ManagerDep) -> JSONResponse:
    models: dict[str, Any] = {}
    for name, state in manager.states.items():
        served = manager.served.get(name)
        models[name] = {
            "alias": state.alias,
            "version": served.version if served else None,
            "ready": served is not None,
            "error": state.error,
        }
    ok = manager.ready
    return JSONResponse(
        {"status": "ready" if ok else "not ready", "models": models},
        status_code=200 if ok else 503,
    )
