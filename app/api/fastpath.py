"""Serve the predict routes without FastAPI's router, inside the middleware stack.

Routing, dependency solving, the request/response wrapper and the exception middleware cost
more per request than parsing, scoring and encoding one row together. This pure-ASGI layer
sits inside the request-id, logging and Prometheus middlewares (so every request is still
logged and counted under its route template) and answers ``POST /predict`` and
``POST /v1/models/{name}:predict`` with the same ``codecs.v1.handle`` the FastAPI routes
call; those routes stay registered for OpenAPI and for anything this layer passes on. Under
``modelserve serve`` these requests do not reach the stack at all: the server's protocol gives
them to ``app.api.lane``, which uses ``predict_target`` and ``routing_key`` from here.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.codecs import v1
from app.api.deps import Services
from app.api.errors import render
from app.errors import RequestError
from app.serving.routing import ROUTING_KEY_HEADER, routing_key_var

V1_PREFIX = "/v1/models/"
V1_SUFFIX = ":predict"
V2_PREFIX = "/v2/models/"
V2_SUFFIX = "/infer"


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


def infer_target(method: str, path: str) -> tuple[str, str | None] | None:
    """The model (and pinned version) of an Open Inference Protocol v2 inference request
    (``POST /v2/models/{name}[/versions/{version}]/infer``), else None."""
    if method != "POST" or not path.startswith(V2_PREFIX) or not path.endswith(V2_SUFFIX):
        return None
    parts = path[len(V2_PREFIX) : -len(V2_SUFFIX)].split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
        return parts[0], parts[2]
    return None


def routing_key(headers: list[tuple[bytes, bytes]]) -> str:
    """``X-Routing-Key`` (at most 256 bytes used), or "" when the client sent none."""
    for key, value in headers:
        if key == ROUTING_KEY_HEADER:
            return value[:256].decode("latin-1")
    return ""


class PredictFastPath:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services
        self.default_model = services.settings.default_model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = None
        if scope["type"] == "http":
            name = predict_target(scope["method"], scope["path"], self.default_model)
            # Read here for every protocol (FastAPI's routes run inside this layer too).
            routing_key_var.set(routing_key(scope["headers"]))
        if name is None:
            await self.app(scope, receive, send)
            return
        try:
            response = await v1.handle(Request(scope, receive), self.services, name)
        except RequestError as exc:
            response = render(exc)
        await response(scope, receive, send)
