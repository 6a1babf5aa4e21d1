"""Liveness and readiness: /health/live and /health/ready, and GET / (KServe's liveness: its
server answers ``{"status": "alive"}`` there, and its SDK's ``is_server_live`` asks it).

Readiness is also 503 once the server drains before it stops (SIGTERM,
``MODELSERVE_SHUTDOWN_DRAIN_S``): ``app/server/drain.py`` sets the manager's ``draining``
event (the lifespan publishes it in the application state), and requests are still answered
meanwhile."""

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
    summary="Every served model is loaded and warmed (503 until then, and while shutting down)",
    responses={
        503: {
            "description": "Some model is not loaded yet, or failed to load; or the server is "
            "draining before it stops (status `draining`: requests are still answered)"
        }
    },
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
    stopping = manager.draining.is_set()
    ok = manager.ready
    status = "draining" if stopping else "ready" if ok else "not ready"
    return JSONResponse({"status": status, "models": models}, status_code=200 if ok else 503)
