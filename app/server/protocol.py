"""uvicorn's httptools protocol with a deadline for reading request headers (slow-loris).

uvicorn bounds the wait between keep-alive requests and, through the app, the body
(``MODELSERVE_BODY_TIMEOUT_S``), but not the headers: a client that sends one header byte every
few seconds would hold its connection forever. This protocol arms a timer when a connection
opens and when a new request begins, disarms it when the headers are complete, and answers
``408`` (the project's JSON error shape) and closes the connection if it fires first.
``modelserve serve`` runs uvicorn with this class as its HTTP protocol.

The deadline comes from the application's lifespan state (``header_timeout_s``), which uvicorn
hands every protocol instance as ``app_state``: it is the value of the settings the application
was built with, not of a process-wide settings cache that ``create_app(settings)`` cannot reach.

A request the application's lane takes (``Lane.pick``; the lane is in the lifespan state under
``predict_lane``: ``app.api.lane.PredictLane``, which takes the predict routes) runs the lane
instead of the whole application, in the same task and response cycle uvicorn made for it.

While the server drains before it stops (``app/server/drain.py`` has set the state's
``draining`` event), every response says ``connection: close`` and the connection closes after
it: a keep-alive client's next request opens a new connection, which its balancer gives a
replica that is not stopping, instead of meeting this one's close when the drain ends.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from uvicorn._types import ASGI3Application, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from app.errors import ErrorReason, error_json
from app.server.drain import DRAINING
from app.server.one_write import OneWriteCycle

PREDICT_LANE = "predict_lane"
"""The lifespan state's key for the app's ``Lane`` (``app.api.lane.PredictLane``)."""
DEFAULT_HEADER_TIMEOUT_S = 10.0
"""Used until the lifespan has published ``header_timeout_s`` (or if an app never does)."""


def _timeout_response(timeout_s: float) -> bytes:
    message = f"request headers not received within {timeout_s:g} s"
    body = error_json(408, ErrorReason.HEADER_TIMEOUT, message, "headers")
    head = (
        b"HTTP/1.1 408 Request Timeout\r\n"
        b"content-type: application/json\r\n"
        b"connection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body


class Lane(Protocol):
    def pick(self, scope: Scope, cycle: RequestResponseCycle) -> ASGI3Application | None:
        """The app that answers this request (``cycle``'s) in place of the whole app, or
        None."""


class HeaderDeadlineProtocol(HttpToolsProtocol):
    _deadline: asyncio.TimerHandle | None = None
    _begun: float | None = None  # when the request whose headers are awaited began

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.loop.time())

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Armed only for headers still incomplete when the bytes at hand are parsed: a request
        # that comes whole (nearly all) never makes a timer.
        if self._begun is not None and self._deadline is None:
            self._arm(self._begun)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun = self.loop.time()

    def on_headers_complete(self) -> None:
        self._begun = None
        self._disarm()
        super().on_headers_complete()
        if self.cycle is not None and type(self.cycle) is not OneWriteCycle:
            # The cycle uvicorn just made, before its task first runs: same state, one write
            # per response (app.server.one_write).
            self.cycle.__class__ = OneWriteCycle
        draining = self.app_state.get(DRAINING)
        if draining is not None and draining.is_set() and self.cycle is not None:
            self.cycle.keep_alive = False  # uvicorn adds `connection: close` and closes after

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        if app is self.app:  # not uvicorn's 503 past its concurrency limit
            lane: Lane | None = self.app_state.get(PREDICT_LANE)
            if lane is not None:
                app = lane.pick(cycle.scope, cycle) or app
        super()._start_asgi_task(cycle, app)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, since: float) -> None:
        """The deadline ``header_timeout_s`` after ``since`` (the loop's clock)."""
        timeout_s = float(self.app_state.get("header_timeout_s", DEFAULT_HEADER_TIMEOUT_S))
        self._deadline = self.loop.call_at(since + timeout_s, self._expired, timeout_s)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, timeout_s: float) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.write(_timeout_response(timeout_s))
            self.transport.close()
