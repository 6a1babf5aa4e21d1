"""A response's status line and headers written with its first body bytes: one system call.

uvicorn writes the head of a response when the app sends ``http.response.start`` and the body
when it sends ``http.response.body``: two writes, so two ``send`` system calls with the GIL
held, for a JSON answer that fits in one packet. Here the head is held from the start message
to the first body write (or to the connection's close, whichever comes first) and both leave in
one write. Everything else is uvicorn's own ``send``: header checks, content length, keep-alive,
chunked encoding, flow control. ``HeaderDeadlineProtocol`` gives every request this cycle.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle


class _HeldHead:
    """The cycle's transport from ``http.response.start`` to the first body write."""

    __slots__ = ("_head", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._head is None:
            self._head = bytes(data)  # the status line and headers: held
            return
        self._transport.write(self._head + data)
        self._head = b""

    def close(self) -> None:
        self.release()
        self._transport.close()

    def release(self) -> asyncio.Transport:
        """Write what is still held; the real transport."""
        if self._head:
            self._transport.write(self._head)
        self._head = b""
        return self._transport

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteCycle(RequestResponseCycle):
    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            self.transport = _HeldHead(self.transport)  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            held = self.transport
            if isinstance(held, _HeldHead) and message["type"] != "http.response.start":
                self.transport = held.release()
