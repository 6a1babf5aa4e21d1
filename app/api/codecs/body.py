"""Reading and decoding request bodies: size and time limits, content codings, JSON with
field-naming errors.

A body sent with ``Content-Encoding: gzip`` or ``deflate`` (what tritonclient's
``request_compression_algorithm`` sends, as Triton accepts) is decompressed before any codec
reads it; ``MODELSERVE_MAX_BODY_BYTES`` bounds the body as sent and again as decompressed, so a
small compressed body cannot expand past the limit in memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from app.errors import ErrorReason, RequestError, clip

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
            body = await _read_limited(request, limit)
        else:
            async with asyncio.timeout(timeout_s):
                body = await _read_limited(request, limit)
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
    coding = request.headers.get("content-encoding")
    return body if coding is None else decoded(body, coding, limit)


# zlib's window bits: a gzip member, a zlib stream ("deflate" as HTTP defines it), raw deflate
# (what some clients send as "deflate").
_GZIP, _ZLIB, _RAW = 16 + zlib.MAX_WBITS, zlib.MAX_WBITS, -zlib.MAX_WBITS
CODINGS = ("gzip", "deflate", "identity")


def decoded(body: bytes, header: str, limit: int) -> bytes:
    """``body`` with the ``Content-Encoding`` codings undone, last applied first (RFC 9110)."""
    for coding in reversed([c.strip().lower() for c in header.split(",") if c.strip()]):
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, (_GZIP,), "gzip", limit)
        elif coding == "deflate":
            body = _inflate(body, (_ZLIB, _RAW), "deflate", limit)
        elif coding != "identity":
            raise RequestError(
                ErrorReason.UNSUPPORTED_ENCODING,
                f"Content-Encoding {clip(coding)!r} is not supported; "
                f"send one of {', '.join(CODINGS)}",
                field="content-encoding",
            )
    return body


def _inflate(data: bytes, formats: tuple[int, ...], coding: str, limit: int) -> bytes:
    """The decompressed bytes (gzip: every member), at most ``limit`` of them."""
    for wbits in formats:
        try:
            return _members(data, wbits, limit)
        except zlib.error as exc:
            error = exc
    raise RequestError(
        ErrorReason.INVALID_ENCODING,
        f"the body is not valid {coding} data: {error}",
        field="body",
    )


def _members(data: bytes, wbits: int, limit: int) -> bytes:
    out: list[bytes] = []
    size = 0
    while True:
        inflater = zlib.decompressobj(wbits)
        chunk = inflater.decompress(data, limit + 1 - size)
        size += len(chunk)
        if size > limit or inflater.unconsumed_tail:
            raise RequestError(
                ErrorReason.BODY_TOO_LARGE,
                f"decompressed request body is over the limit of {limit} bytes",
                field="body",
            )
        if not inflater.eof:
            raise zlib.error("the data ends before its end-of-stream marker")
        out.append(chunk)
        data = inflater.unused_data
        if wbits != _GZIP or not data:  # gzip members may follow one another
            return b"".join(out)


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
