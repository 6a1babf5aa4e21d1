"""The error vocabulary: why a request failed, independent of HTTP.

Every refusal modelserve gives is a ``RequestError`` carrying one ``ErrorReason``. The reasons
are the bounded values of the ``reason`` metric label and the ``type`` of the JSON error body;
only the API layer (``app.api.errors``) maps them to HTTP statuses and headers.
"""

from __future__ import annotations

import reprlib
from enum import StrEnum
from typing import Any

import orjson

# A client's text quoted in an error message: at most this many characters, then its size.
QUOTE_CHARS = 64
# Any error message, whatever its source (a model's exception, a library's), and the field it
# names: an error body stays a few KB whatever the request (JSON escapes can grow a character
# to six bytes: 1,024 + 256 characters are at most 7.5 KB).
MAX_MESSAGE_CHARS = 1024
MAX_FIELD_CHARS = 256
_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_REPR.maxlevel, _REPR.maxother, _REPR.maxstring, _REPR.maxlong = 2, QUOTE_CHARS, QUOTE_CHARS, 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


class ErrorReason(StrEnum):
    # the request body
    INVALID_JSON = "invalid_json"
    INVALID_REQUEST = "invalid_request"
    INVALID_FEATURES = "invalid_features"
    INVALID_VALUE = "invalid_value"
    BATCH_TOO_LARGE = "batch_too_large"
    BODY_TOO_LARGE = "body_too_large"
    UNSUPPORTED_ENCODING = "unsupported_encoding"  # a Content-Encoding other than gzip/deflate
    INVALID_ENCODING = "invalid_encoding"  # a gzip or deflate body that does not decompress
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
    NOT_EXPLAINABLE = "not_explainable"  # no exact explainer for this version (:explain)
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
        message = bounded(message, MAX_MESSAGE_CHARS)
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = None if field is None else bounded(field, MAX_FIELD_CHARS)


def size_of(text: str) -> int:
    """``text``'s size in bytes, as UTF-8 (a lone surrogate from JSON counted as three)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def clip(text: str, limit: int = QUOTE_CHARS) -> str:
    """``text`` if at most ``limit`` characters, else its first ``limit`` and its size:
    ``abc... (1048576 bytes)``."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({size_of(text)} bytes)"


def bounded(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters: cut, if longer, to end with its size
    (``abc... (1048576 bytes)``); a text so cut is left as it is."""
    if len(text) <= limit:
        return text
    suffix = f"... ({size_of(text)} bytes)"
    return text[: max(limit - len(suffix), 0)] + suffix


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """A client's string as an error quotes it: its ``repr``, cut to ``limit`` characters with
    its size after: ``'abc'... (1048576 bytes)``."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({size_of(text)} bytes)"


def short_repr(value: Any) -> str:
    """Any client value as an error quotes it: a string as ``quote`` does, a list or an object
    by its first items (``[1, 2, 3, 4, 5, 6, ...]``), never more than a few hundred characters."""
    if isinstance(value, str):
        return quote(value)
    try:
        return clip(_REPR.repr(value), 4 * QUOTE_CHARS)
    except ValueError:  # an int of more digits than Python converts (sys.set_int_max_str_digits)
        return f"a {type(value).__name__}"


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
        return f"the string {quote(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def error_json(status: int, reason: str, message: str, field: str | None = None) -> bytes:
    """The JSON error body every refusal is sent as, from the API or the HTTP protocol:
    ``{"error": {"status", "type", "message", "field"?}}``; the message and the field are cut
    to ``MAX_MESSAGE_CHARS`` and ``MAX_FIELD_CHARS`` (with their size) whatever their source."""
    body: dict[str, Any] = {
        "status": status,
        "type": reason,
        "message": bounded(message, MAX_MESSAGE_CHARS),
    }
    if field is not None:
        body["field"] = bounded(field, MAX_FIELD_CHARS)
    return orjson.dumps({"error": body})
