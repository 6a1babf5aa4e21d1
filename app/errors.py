"""The error a request can end in, independent of HTTP framework code.

``ApiError`` lives here, below both the parsers (``app.schemas``) and the routes (``app.api``),
so parsing never imports the web layer; ``app.api.errors`` renders it as JSON.
"""

from __future__ import annotations

from app.metrics import ErrorReason


class ApiError(Exception):
    """An error the client caused (or may retry); rendered as the JSON error shape."""

    def __init__(
        self,
        status: int,
        reason: ErrorReason | str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = str(reason)
        self.message = message
        self.field = field
        self.headers = headers or {}
