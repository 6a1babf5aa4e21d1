"""A client that hangs up while sending its body is client_disconnected (499), not a crash."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request
from starlette.types import Message

from app.api.codecs.body import read_body
from app.api.errors import STATUS
from app.errors import ErrorReason, RequestError


def _request(messages: list[Message]) -> Request:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0)

    headers = [(b"content-type", b"application/json"), (b"content-length", b"1048576")]
    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


HUNG_UP: list[list[Message]] = [
    [{"type": "http.disconnect"}],
    [
        {"type": "http.request", "body": b'{"instance', "more_body": True},
        {"type": "http.disconnect"},
    ],
]


@pytest.mark.parametrize("messages", HUNG_UP, ids=["before the body", "mid body"])
def test_a_hang_up_is_client_disconnected(messages: list[Message]) -> None:
    with pytest.raises(RequestError) as refused:
        asyncio.run(read_body(_request(messages), 4 << 20, 5.0))
    assert refused.value.reason is ErrorReason.CLIENT_DISCONNECTED
    assert STATUS[refused.value.reason] == 499


def test_a_complete_body_is_read() -> None:
    messages: list[Message] = [
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        {"type": "http.request", "body": b" 1}", "more_body": False},
    ]
    assert asyncio.run(read_body(_request(messages), 4 << 20, 5.0)) == b'{"a": 1}'
