"""HTTP and gRPC for the error vocabulary: status and headers per ``ErrorReason``, the JSON shape.

modelserve's own routes answer ``{"error": {"status", "type", "field", "message"}}``; the Open
Inference Protocol routes answer ``{"error": "<field>: <message>"}`` with the protocol's
statuses (``app.api.codecs.v2``), and its gRPC service the same message with ``GRPC_STATUS``'s
code. This is the only place a reason becomes a status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.errors import ErrorReason, RequestError, error_json

R = ErrorReason
STATUS: Mapping[ErrorReason, int] = {
    R.INVALID_JSON: 400,
    R.INVALID_REQUEST: 422,
    R.INVALID_FEATURES: 422,
    R.INVALID_VALUE: 422,
    R.BATCH_TOO_LARGE: 413,
    R.BODY_TOO_LARGE: 413,
    R.UNSUPPORTED_ENCODING: 415,
    R.INVALID_ENCODING: 400,
    R.BODY_TIMEOUT: 408,
    R.CLIENT_DISCONNECTED: 499,  # nginx's "client closed request": never sent, only counted
    R.HEADER_TIMEOUT: 408,
    R.UNKNOWN_MODEL: 404,
    R.NOT_READY: 503,
    R.OVERLOADED: 503,
    R.TIMEOUT: 504,
    R.REJECTED_BY_MODEL: 422,
    R.MODEL_ERROR: 500,
    R.NOT_EXPLAINABLE: 422,
    R.UNKNOWN_PREDICTION: 404,
    R.DUPLICATE_FEEDBACK: 409,
    R.INVALID_LABEL: 422,
    R.LOG_UNAVAILABLE: 503,
    R.LOG_DISABLED: 503,
    R.UNAUTHORIZED: 401,
    R.FORBIDDEN: 403,
    R.NOT_FOUND: 404,
    R.METHOD_NOT_ALLOWED: 405,
    R.HTTP_ERROR: 400,
}
C = grpc.StatusCode
# The OIP gRPC service (app.api.grpc): the code of each reason, as KServe and Triton answer.
GRPC_STATUS: Mapping[ErrorReason, grpc.StatusCode] = {
    R.INVALID_JSON: C.INVALID_ARGUMENT,
    R.INVALID_REQUEST: C.INVALID_ARGUMENT,
    R.INVALID_FEATURES: C.INVALID_ARGUMENT,
    R.INVALID_VALUE: C.INVALID_ARGUMENT,
    R.BATCH_TOO_LARGE: C.INVALID_ARGUMENT,
    R.BODY_TOO_LARGE: C.RESOURCE_EXHAUSTED,  # what grpc answers past its message size itself
    R.UNSUPPORTED_ENCODING: C.UNIMPLEMENTED,  # grpc's own compression is its transport's
    R.INVALID_ENCODING: C.INVALID_ARGUMENT,
    R.BODY_TIMEOUT: C.DEADLINE_EXCEEDED,
    R.CLIENT_DISCONNECTED: C.CANCELLED,
    R.HEADER_TIMEOUT: C.DEADLINE_EXCEEDED,
    R.UNKNOWN_MODEL: C.NOT_FOUND,
    R.NOT_READY: C.UNAVAILABLE,
    R.OVERLOADED: C.RESOURCE_EXHAUSTED,
    R.TIMEOUT: C.DEADLINE_EXCEEDED,
    R.REJECTED_BY_MODEL: C.INVALID_ARGUMENT,
    R.MODEL_ERROR: C.INTERNAL,
    R.NOT_EXPLAINABLE: C.FAILED_PRECONDITION,
    R.UNKNOWN_PREDICTION: C.NOT_FOUND,
    R.DUPLICATE_FEEDBACK: C.ALREADY_EXISTS,
    R.INVALID_LABEL: C.INVALID_ARGUMENT,
    R.LOG_UNAVAILABLE: C.UNAVAILABLE,
    R.LOG_DISABLED: C.UNAVAILABLE,
    R.UNAUTHORIZED: C.UNAUTHENTICATED,
    R.FORBIDDEN: C.PERMISSION_DENIED,
    R.NOT_FOUND: C.NOT_FOUND,
    R.METHOD_NOT_ALLOWED: C.UNIMPLEMENTED,
    R.HTTP_ERROR: C.INVALID_ARGUMENT,
}
RETRY_AFTER_S = "1"
HEADERS: Mapping[ErrorReason, dict[str, str]] = {
    R.OVERLOADED: {"Retry-After": RETRY_AFTER_S},
    R.BODY_TIMEOUT: {"Connection": "close"},  # a slow-loris client loses its connection
    R.UNAUTHORIZED: {"WWW-Authenticate": "Bearer"},
}


class ErrorBody(BaseModel):
    status: int
    type: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_response(
    status: int,
    reason: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_json(status, reason, message, field),
        status_code=status,
        media_type="application/json",
        headers=dict(headers) if headers else None,
    )


def render(exc: RequestError) -> Response:
    """A ``RequestError`` as modelserve's JSON error, with its status and headers."""
    return error_response(
        STATUS[exc.reason], exc.reason, exc.message, exc.field, HEADERS.get(exc.reason)
    )


def _loc_to_field(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> Response:
        return render(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = _loc_to_field(first.get("loc", ()))
        return error_response(422, R.INVALID_REQUEST, str(first.get("msg")), field)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        reason = {404: R.NOT_FOUND, 405: R.METHOD_NOT_ALLOWED}.get(exc.status_code, R.HTTP_ERROR)
        headers = getattr(exc, "headers", None)
        return error_response(exc.status_code, reason, str(exc.detail), headers=headers)
