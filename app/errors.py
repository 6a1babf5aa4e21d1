"""The error vocabulary: why a request failed, independent of HTTP.

Every refusal modelserve gives is a ``RequestError`` carrying one ``ErrorReason``. The reasons
are the bounded values of the ``reason`` metric label and the ``type`` of the JSON error body;
only the API layer (``app.api.errors``) maps them to HTTP statuses and headers.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import orjson


class ErrorReason(StrEnum):
    # the request body
    INVALID_JSON = "invalid_json"
    INVALID_REQUEST = "invalid_request"
    INVALID_FEATURES = "invalid_features"
    INVALID_VALUE = "invalid_value"
    BATCH_TOO_LARGE = "batch_too_large"
    BODY_TOO_LARGE = "body_too_large"
    BODY_TIMEOUT = "body_timeout"
    CLIENT_DISCONNECTED = "client_disconnected"  # the client left before its body was sent
    HEADER_TIMEOUT = "header_timeout"
    # the model
    UNKNOWN_MODEL = "unknown_model"
    NOT_READY = "not_ready"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    REJECTED_BY_MODEL = "rejected_by_model"  # the model raised on this input only
    MODEL_ERROR = "model_error"  # the model fails even on its own example
    # feedback
    UNKNOWN_PREDICTION = "unknown_prediction"
    DUPLICATE_FEEDBACK = "duplicate_feedback"
    INVALID_LABEL = "invalid_label"
    LOG_UNAVAILABLE = "log_unavailable"
    LOG_DISABLED = "log_disabled"
    # access and routing
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    HTTP_ERROR = "http_error"


class RequestError(Exception):
    """A request modelserve refuses or cannot serve; ``field`` names the part at fault."""

    def __init__(self, reason: ErrorReason, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field


def describe_value(value: Any) -> str:
    """A short, safe description of a JSON value that is not what it should be."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer out of range"
    if isinstance(value, float):
        return "a fractional number"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def error_json(status: int, reason: str, message: str, field: str | None = None) -> bytes:
    """The JSON error body every refusal is sent as, from the API or the HTTP protocol:
    ``{"error": {"status", "type", "message", "field"?}}``."""
    body: dict[str, Any] = {"status": status, "type": reason, "message": message}
    if field is not None:
        body["field"] = field
    return orjson.dumps({"error": body})
