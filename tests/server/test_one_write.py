"""A response leaves in one write: its head is held until its first body bytes, never lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl

from app.server.one_write import OneWriteCycle

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def _cycle(method: str = "POST", keep_alive: bool = True) -> tuple[OneWriteCycle, Transport]:
    transport = Transport()
    cycle = OneWriteCycle(
        scope={"method": method, "http_version": "1.1"},  # type: ignore[typeddict-item]
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )
    return cycle, transport


def _start(length: int | None) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http.response.start", "status": 200, "headers": headers}


def _body(data: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


def test_head_and_body_leave_in_one_write() -> None:
    cycle, transport = _cycle()

    async def respond() -> None:
        await cycle.send(_start(7))  # type: ignore[arg-type]
        assert transport.writes == []
        await cycle.send(_body(b'{"a":1}'))  # type: ignore[arg-type]

    asyncio.run(respond())
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b'\r\n\r\n{"a":1}')
    released: object = cycle.transport
    assert released is transport and cycle.response_complete


def test_streamed_chunks_follow_the_first_one() -> None:
    cycle, transport = _cycle()

    async def respond() -> None:
        await cycle.send(_start(None))  # type: ignore[arg-type]
        await cycle.send(_body(b"one", more=True))  # type: ignore[arg-type]
        await cycle.send(_body(b"two"))  # type: ignore[arg-type]

    asyncio.run(respond())
    assert len(transport.writes) == 2
    assert b"transfer-encoding: chunked" in transport.writes[0]
    assert transport.writes[0].endswith(b"\r\n\r\n3\r\none\r\n")
    assert transport.writes[1] == b"3\r\ntwo\r\n0\r\n\r\n"


@pytest.mark.parametrize("keep_alive", [True, False])
def test_a_head_answer_without_body_bytes_still_leaves(keep_alive: bool) -> None:
    cycle, transport = _cycle("HEAD", keep_alive)

    async def respond() -> None:
        await cycle.send(_start(7))  # type: ignore[arg-type]
        await cycle.send(_body(b""))  # type: ignore[arg-type]

    asyncio.run(respond())
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b"\r\n\r\n")
    assert transport.closed is not keep_alive


def test_an_app_failing_after_the_head_gets_it_written_before_the_close() -> None:
    cycle, transport = _cycle()

    async def app(scope: Any, receive: Any, send: Send) -> None:
        await send(_start(7))
        raise RuntimeError("boom")

    asyncio.run(cycle.run_asgi(app))  # type: ignore[arg-type]
    assert len(transport.writes) == 1 and transport.writes[0].startswith(b"HTTP/1.1 200")
    assert transport.closed
