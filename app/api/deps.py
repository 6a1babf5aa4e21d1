"""Dependencies shared by the routes."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.errors import ApiError
from app.metrics import ErrorReason
from app.registry.store import Registry
from app.serving.manager import ModelManager


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_manager(request: Request) -> ModelManager:
    manager: ModelManager = request.app.state.manager
    return manager


def get_registry(request: Request) -> Registry:
    return get_manager(request).registry


SettingsDep = Annotated[Settings, Depends(get_settings)]
ManagerDep = Annotated[ModelManager, Depends(get_manager)]
RegistryDep = Annotated[Registry, Depends(get_registry)]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes without reading it all.

    A body that is not complete within ``body_timeout_s`` (a slow-loris client trickling
    bytes) is refused with 408 and the connection closed, so it cannot hold a worker's memory
    or a connection slot indefinitely.
    """
    timeout_s = get_settings(request).body_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_limited(request, limit)
    except TimeoutError:
        raise ApiError(
            408,
            ErrorReason.BODY_TIMEOUT,
            f"request body not received within {timeout_s} s",
            field="body",
            headers={"Connection": "close"},
        ) from None


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            413,
            ErrorReason.BODY_TOO_LARGE,
            f"request body of {declared} bytes is over the limit of {limit} bytes",
            field="body",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(
                413,
                ErrorReason.BODY_TOO_LARGE,
                f"request body is over the limit of {limit} bytes",
                field="body",
            )
        chunks.append(chunk)
    return b"".join(chunks)
