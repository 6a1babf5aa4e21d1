"""KServe V1's model routes beside its predict route: GET /v1/models and GET /v1/models/{name}.

As KServe's own server answers them: the list is every model this server serves, and a model's
status is ``{"name", "ready"}`` with 200 whether or not it is ready yet (a probe reads the
field); a model this server does not serve is 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import ManagerDep
from app.errors import ErrorReason, RequestError

router = APIRouter(prefix="/v1/models", tags=["kserve v1"])


@router.get("", summary="Every served model's name (KServe V1)")
async def list_models(manager: ManagerDep) -> dict[str, Any]:
    return {"models": sorted(manager.states)}


@router.get("/{name}", summary="Whether a model is ready (KServe V1; 200 either way)")
async def model_ready(name: str, manager: ManagerDep) -> dict[str, Any]:
    if name not in manager.states:
        raise RequestError(
            ErrorReason.UNKNOWN_MODEL, f"model {name!r} is not served here", field="name"
        )
    return {"name": name, "ready": name in manager.served}
