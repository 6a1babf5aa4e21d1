"""Admin routes (``/admin/*``), mounted only when ``MODELSERVE_ADMIN_TOKEN`` is set.

``POST /admin/reload`` re-reads the registry aliases now instead of at the next poll and
returns what was swapped. It reloads the worker that answers; the others follow at their next
poll (``MODELSERVE_POLL_INTERVAL_S``).
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import SecretStr

from app.api.deps import ManagerDep
from app.errors import ErrorReason, RequestError


def _require_token(token: SecretStr) -> Any:
    expected = token.get_secret_value().encode()

    def check(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, supplied = header.partition(" ")
        if scheme.lower() != "bearer" or not supplied.strip():
            raise RequestError(
                ErrorReason.UNAUTHORIZED,
                "admin routes need 'Authorization: Bearer <MODELSERVE_ADMIN_TOKEN>'",
                field="Authorization",
            )
        if not hmac.compare_digest(supplied.strip().encode(), expected):
            raise RequestError(ErrorReason.FORBIDDEN, "wrong admin token", field="Authorization")

    return check


def build_router(token: SecretStr) -> APIRouter:
    router = APIRouter(
        prefix="/admin", tags=["admin"], dependencies=[Depends(_require_token(token))]
    )

    @router.post(
        "/reload",
        summary="Re-read registry aliases now and hot-swap changed versions",
        responses={401: {"description": "No bearer token"}, 403: {"description": "Wrong token"}},
    )
    async def reload(manager: ManagerDep) -> dict[str, Any]:
        results = await manager.refresh(force=True)
        return {
            "swaps": [
                {
                    "model": r.model,
                    "old_version": r.old_version,
                    "new_version": r.new_version,
                    "ok": r.error is None,
                    "error": r.error,
                }
                for r in results
            ],
            "serving": {name: served.version for name, served in manager.served.items()},
        }

    return router
