"""The predict routes answered beside the ASGI middleware stack, with the stack's behaviour.

Under ``modelserve serve``, uvicorn hands a request to the app through its proxy-headers
wrapper, FastAPI, Starlette's error middleware, FastAPI's telemetry and body-limit layers,
the request-id and access-log middleware, the instrumentator's and ``PredictFastPath``: seven
coroutines, each wrapping ``send``, about 80 µs of a one-row request whose model call takes
6. The server's protocol (``app.server.protocol``) asks ``PredictLane.pick`` for each
request and gives the lane ``POST /predict``, ``POST /v1/models/{name}:predict`` and the Open
Inference Protocol's ``POST /v2/models/{name}[/versions/{version}]/infer`` (what KServe's,
Triton's and MLServer's clients send); the lane does, in one coroutine, what those layers do
for such a request:

- the request id (``X-Request-ID`` taken or made, echoed, in the log context);
- the instrumentator's in-progress gauge and its own instrumentation functions, under the
  route template its middleware names (``app.api.instrumentation``), on the same metrics;
- ``codecs.v1.answer``, as ``PredictFastPath`` calls it, a ``RequestError`` as its JSON error,
  or the v2 route's own ``routes.v2.infer``, a ``RequestError`` in the protocol's shape (a
  body that came whole with the headers is read without a deadline: nothing to wait for);
- the access-log line (``app.logs``);
- an unexpected exception: status 500 counted and logged, Starlette's plain
  ``Internal Server Error`` sent, the exception raised on for uvicorn to log, as the stack does
  (a cancelled request is counted and logged as 500 too, and nothing is sent).

The other layers do nothing for these requests: the proxy-headers rewrite changes the client
address, which no part of a prediction reads, FastAPI's telemetry is off and its body limit is
unset (``codecs.body`` applies ``MODELSERVE_MAX_BODY_BYTES``). A cross-origin request, when CORS
is configured, still goes through the stack for its headers, as does every other route.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

from fastapi import FastAPI
from prometheus_fastapi_instrumentator.metrics import Info
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.codecs import v1
from app.api.codecs import v2 as v2_codec
from app.api.deps import Services
from app.api.errors import render
from app.api.fastpath import infer_target, predict_target, routing_key
from app.api.instrumentation import CachedRouteInstrumentator
from app.api.routes import v2
from app.errors import RequestError
from app.logs import REQUEST_ID_HEADER, log_access, request_id_of, request_id_var
from app.serving.routing import routing_key_var

ORIGIN_HEADER = b"origin"
CONTENT_LENGTH = b"content-length"
JSON_TYPE = (b"content-type", b"application/json")


Reply = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body
Replier = Callable[[Request, bool], Awaitable[Reply]]  # (request, whole body here)


class Arrival(Protocol):
    """The server's state of the request (uvicorn's ``RequestResponseCycle``)."""

    more_body: bool  # False once the whole body has arrived


class PredictLane:
    def __init__(self, app: FastAPI, services: Services) -> None:
        self._app = app
        self._services = services
        self._default_model = services.settings.default_model
        self._cors = bool(services.settings.cors_origins)
        self._metrics = _instrumentator(app)

    def pick(self, scope: Scope, arrival: Arrival) -> ASGIApp | None:
        """The lane's answer for a predict or v2 inference request, None for the stack."""
        method, path = scope["method"], scope["path"]
        reply: Replier
        name = predict_target(method, path, self._default_model)
        if name is not None:
            reply = partial(self._v1, name)
        elif (target := infer_target(method, path)) is not None:
            reply = partial(self._v2, *target)
        else:
            return None
        if self._cors and any(k == ORIGIN_HEADER for k, _ in scope["headers"]):
            return None
        return partial(self.answer, reply, arrival)

    async def _v1(self, name: str, request: Request, body_here: bool) -> Reply:
        try:
            body = await v1.answer(request, self._services, name, body_here)
        except RequestError as exc:
            return _reply(render(exc))
        return 200, [(CONTENT_LENGTH, str(len(body)).encode()), JSON_TYPE], body

    async def _v2(self, name: str, version: str | None, request: Request, body_here: bool) -> Reply:
        try:
            response = await v2.infer(request, self._services, name, version, body_here)
        except RequestError as exc:  # in the protocol's shape, as its routes answer it
            response = v2_codec.render(exc)
        return _reply(response)

    async def answer(
        self, reply: Replier, arrival: Arrival, scope: Scope, receive: Receive, send: Send
    ) -> None:
        start = time.perf_counter()
        body_here = not arrival.more_body  # it came with the headers: no deadline to keep
        request_id = request_id_of(scope["headers"])
        token = request_id_var.set(request_id)
        routing_key_var.set(routing_key(scope["headers"]))
        request = Request(scope, receive)
        handler = self._metrics.handler_name(scope, self._app)
        inprogress = self._metrics.inprogress_child(scope["method"], handler)
        try:
            status, headers, body = await reply(request, body_here)
        except BaseException as exc:  # counted and logged as 500 even when cancelled
            self._done(request, None, handler, 500, start, inprogress)
            request_id_var.reset(token)
            if isinstance(exc, Exception):
                await PlainTextResponse("Internal Server Error", 500)(scope, receive, send)
            raise
        headers.append((REQUEST_ID_HEADER, request_id.encode("latin-1")))
        try:  # what a starlette Response sends, without making one
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            self._done(request, (status, headers, body), handler, status, start, inprogress)
            request_id_var.reset(token)

    def _done(
        self,
        request: Request,
        sent: Reply | None,
        handler: str,
        status: int,
        start: float,
        inprogress: Any,
    ) -> None:
        """The instrumentator's observations, then the access-log line."""
        if inprogress is not None:
            inprogress.dec()
        seconds = max(time.perf_counter() - start, 0.0)
        scope = request.scope
        series = self._metrics.series
        if series is not None:
            raw = sent[1] if sent is not None else []
            sizes = _content_length(scope["headers"]), _content_length(raw)
            series.observe(scope["method"], handler, status, *sizes, seconds)
        else:
            info = Info(
                request=request,
                response=_response(sent),
                method=scope["method"],
                modified_handler=handler,
                modified_status=str(status),
                modified_duration=seconds,
            )
            for instrumentation in self._metrics.instrumentations:
                instrumentation(info)
        log_access(scope, status, start)


def _reply(response: Response) -> Reply:
    return response.status_code, list(response.raw_headers), bytes(response.body)


def _response(sent: Reply | None) -> Response | None:
    """What was sent as the starlette Response an instrumentation function reads."""
    if sent is None:
        return None
    response = Response(sent[2], status_code=sent[0])
    response.raw_headers = list(sent[1])
    return response


def _content_length(headers: list[tuple[bytes, bytes]]) -> int:
    """``Content-Length`` as the instrumentator reads it (0 without one)."""
    for key, value in headers:
        if key == CONTENT_LENGTH:
            return int(value)
    return 0


def _instrumentator(app: FastAPI) -> CachedRouteInstrumentator:
    """The instrumentator's middleware in the app's built stack."""
    layer: object = app.middleware_stack
    while layer is not None and not isinstance(layer, CachedRouteInstrumentator):
        layer = getattr(layer, "app", None)
    if layer is None:
        raise RuntimeError("the app's middleware stack has no instrumentator (not built yet?)")
    return layer
