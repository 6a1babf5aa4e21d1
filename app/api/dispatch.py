"""Serve the predict routes without FastAPI's router: the hot path of the service.

Routing, dependency solving, the request/response wrapper and the exception middleware cost
more per request than parsing, scoring and encoding one row together. This pure-ASGI layer
sits inside the request-id, logging and Prometheus middlewares (so every request is still
logged and counted under its route template) and answers ``POST /predict`` and
``POST /v1/models/{name}:predict`` by calling the very same ``predict_with`` the FastAPI routes
call; those routes stay registered for OpenAPI and for anything this layer passes on.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import error_response
from app.api.predict import predict_with
from app.config import Settings
from app.errors import ApiError

V1_PREFIX = "/v1/models/"
V1_SUFFIX = ":predict"


def predict_target(method: str, path: str, default_model: str) -> str | None:
    """The model a request is for if it is a predict request, else None."""
    if method != "POST":
        return None
    if path == "/predict":
        return default_model
    if path.startswith(V1_PREFIX) and path.endswith(V1_SUFFIX):
        name = path[len(V1_PREFIX) : -len(V1_SUFFIX)]
        if name and "/" not in name:
            return name
    return None


class PredictFastPath:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.default_model = settings.model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = None
        if scope["type"] == "http":
            name = predict_target(scope["method"], scope["path"], self.default_model)
        if name is None:
            await self.app(scope, receive, send)
            return
        try:
            response = await predict_with(Request(scope, receive), name)
        except ApiError as exc:
            response = error_response(exc.status, exc.reason, exc.message, exc.field, exc.headers)
        await response(scope, receive, send)
