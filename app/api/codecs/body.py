"""Reading and decoding request bodies: size and time limits, JSON with field-naming errors."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from app.errors import ErrorReason, RequestError

log = logging.getLogger(__name__)


async def read_body(request: Request, limit: int, timeout_s: float | None) -> bytes:
    """The request body, refusing anything over ``limit`` bytes without reading it all.

    A body that is not complete within ``timeout_s`` (a slow-loris client trickling bytes)
    is refused and the connection closed, so it cannot hold a worker's memory or a connection
    slot indefinitely. None: the server has the whole body already (nothing to wait for, so no
    timer). A client that hangs up before the end is ``client_disconnected``: the
    server did nothing wrong, so it is status 499 in the access log and the HTTP metrics (a
    response nobody receives: uvicorn drops it), never a 500 in the error ratio.
    """
    try:
        if timeout_s is None:
            return await _read_limited(request, limit)
        async with asyncio.timeout(timeout_s):
            return await _read_limited(request, limit)
    except ClientDisconnect:
        log.info("client disconnected before the request body was complete")
        raise RequestError(
            ErrorReason.CLIENT_DISCONNECTED,
            "the client disconnected before the request body was complete",
            field="body",
        ) from None
    except TimeoutError:
        raise RequestError(
            ErrorReason.BODY_TIMEOUT,
            f"request body not received within {timeout_s} s",
            field="body",
        ) from None


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(
            ErrorReason.BODY_TOO_LARGE,
            f"request body of {declared} bytes is over the limit of {limit} bytes",
            field="body",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(
                ErrorReason.BODY_TOO_LARGE,
                f"request body is over the limit of {limit} bytes",
                field="body",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> float:
    return float(name)  # NaN / Infinity: kept as floats so the contract names their field


def decode_json(body: bytes) -> Any:
    """Parse a JSON body; standard-library fallback so ``NaN`` reports its field, not a 400."""
    if not body.strip():
        raise RequestError(ErrorReason.INVALID_JSON, "request body is empty", field="body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise RequestError(
            ErrorReason.INVALID_JSON, f"body is not valid JSON: {exc}", field="body"
        ) from None
