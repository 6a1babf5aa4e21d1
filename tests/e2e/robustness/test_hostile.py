"""Hostile payloads against a real server: each refused with its 4xx in bounded memory and
time, while a stream of well-formed predictions keeps succeeding."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.helpers.hostile import (
    MB,
    connected,
    read_status,
    rss_bytes,
    send_streaming,
    trickle,
    trickle_on,
)
from tests.helpers.support import Server

BODY_TIMEOUT_S = 2.0
HEADER_TIMEOUT_S = 2.0
pytestmark = pytest.mark.e2e


class Steady:
    """Well-formed predictions in a loop on their own connection; counts every outcome."""

    def __init__(self, url: str, body: dict[str, Any]) -> None:
        self.url, self.body = url, body
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.post("/predict", json=self.body)
                    if response.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"{response.status_code} {response.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                time.sleep(0.02)

    def __enter__(self) -> Steady:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, list[str]]]:
    from tests.helpers.support import copy_registry

    tmp = tmp_path_factory.mktemp("hostile")
    registry = copy_registry(tmp / "models")
    env = {
        "MODELSERVE_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "MODELSERVE_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "MODELSERVE_POLL_INTERVAL_S": "0",
    }
    with Server(registry, workdir=tmp, env=env) as server:
        server.wait_ready()
        meta = json.loads((registry / "breast-cancer" / "1" / "metadata.json").read_text())
        names = [f["name"] for f in meta["features"]]
        yield server, names


@pytest.fixture(scope="module")
def example(hostile_server: tuple[Server, list[str]]) -> list[float]:
    server, names = hostile_server
    info = httpx.get(server.url + "/openapi.json", timeout=10).json()
    body = info["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    row: list[float] = body["examples"]["list"]["value"]["instances"][0]
    assert len(row) == len(names)
    return row


def _json(status: int, raw: bytes) -> dict[str, Any]:
    body = raw.split(b"\r\n\r\n", 1)[1]
    error: dict[str, Any] = json.loads(body)["error"]
    assert error["status"] == status
    return error


def _checked(
    server: Server, example: list[float], attack: Callable[[], tuple[int, dict[str, Any]]]
) -> tuple[int, dict[str, Any], float, int]:
    """Run an attack beside a steady good client; returns status, error, seconds, RSS growth."""
    assert server.proc is not None
    before = rss_bytes(server.proc.pid)
    with Steady(server.url, {"instances": [example]}) as steady:
        start = time.monotonic()
        status, error = attack()
        took = time.monotonic() - start
        deadline = time.monotonic() + 30
        seen = steady.ok
        while steady.ok <= seen and time.monotonic() < deadline:  # one more after the attack
            time.sleep(0.02)
    growth = rss_bytes(server.proc.pid) - before
    assert not steady.failures, steady.failures[:3]
    assert steady.ok > seen, "no well-formed request succeeded after the attack"
    print(f"status={status} took={took:.2f}s rss_growth={growth / MB:.1f}MB good={steady.ok}")
    return status, error, took, growth


def _post(server: Server, body: bytes) -> tuple[int, dict[str, Any]]:
    response = httpx.post(
        server.url + "/predict",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    error: dict[str, Any] = response.json()["error"]
    return response.status_code, error


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_100mb_body_is_refused_413_without_buffering_it(
    hostile_server: tuple[Server, list[str]], example: list[float], chunked: bool
) -> None:
    server, _ = hostile_server

    def attack() -> tuple[int, dict[str, Any]]:
        status, raw, sent = send_streaming(server.port, "/predict", 100 * MB, chunked=chunked)
        print(f"body bytes sent before the refusal: {sent / MB:.0f}MB")
        return status, _json(status, raw) if status else {}

    status, error, took, growth = _checked(server, example, attack)
    assert status == 413
    assert error["type"] == "body_too_large" and error["field"] == "body"
    assert growth < 40 * MB  # the 4 MB limit, not the 100 MB sent
    assert took < 30


@pytest.mark.parametrize(
    ("name", "status", "kind", "field"),
    [
        ("deep", 400, "invalid_json", "body"),
        ("million", 413, "batch_too_large", "instances"),
        ("1e400", 422, "invalid_value", "instances[0][0]"),
        ("5000-digit", 400, "invalid_json", "body"),
        ("string", 422, "invalid_value", "instances[0][1]"),
        ("unicode", 422, "invalid_features", None),
    ],
)
def test_hostile_json_gets_its_4xx(
    hostile_server: tuple[Server, list[str]],
    example: list[float],
    name: str,
    status: int,
    kind: str,
    field: str | None,
) -> None:
    server, names = hostile_server
    rest = json.dumps(example[1:])[1:-1]
    bodies = {
        "deep": b"[" * 1_000_000 + b"]" * 1_000_000,
        "million": b'{"instances": [' + b",".join([b"0"] * 1_000_000) + b"]}",
        "1e400": f'{{"instances": [[1e400, {rest}]]}}'.encode(),
        "5000-digit": f'{{"instances": [[{"9" * 5000}, {rest}]]}}'.encode(),
        "string": json.dumps({"instances": [[example[0], "12.5", *example[2:]]]}).encode(),
        "unicode": json.dumps(
            {"instances": [{**dict(zip(names[1:], example[1:], strict=True)), "半径😀": 1.0}]},
            ensure_ascii=False,
        ).encode(),
    }
    got, error, took, growth = _checked(server, example, lambda: _post(server, bodies[name]))
    assert (got, error["type"]) == (status, kind), error
    if field is not None:
        assert error["field"] == field
    else:  # the missing feature is named, and the unicode one is echoed intact
        assert error["field"] == f"instances[0].{names[0]}"
    assert growth < 200 * MB
    assert took < 30


def test_slow_body_is_refused_408_at_the_deadline(
    hostile_server: tuple[Server, list[str]], example: list[float]
) -> None:
    server, _ = hostile_server
    body = json.dumps({"instances": [example]}).encode()
    request = (
        f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()

    def attack() -> tuple[int, dict[str, Any]]:
        with connected(server.port) as sock:
            sock.sendall(request)  # headers at once, then the body a byte at a time
            status, raw, _ = trickle_on(sock, body, interval=0.2, limit_s=BODY_TIMEOUT_S + 20)
        return status, _json(status, raw)

    status, error, took, _ = _checked(server, example, attack)
    assert status == 408 and error["type"] == "body_timeout" and error["field"] == "body"
    assert BODY_TIMEOUT_S - 0.5 <= took < BODY_TIMEOUT_S + 10


def test_trickled_headers_are_refused_408_at_the_deadline(
    hostile_server: tuple[Server, list[str]], example: list[float]
) -> None:
    """Headers sent a byte at a time get 408 when MODELSERVE_HEADER_TIMEOUT_S runs out, and
    every other client keeps being served meanwhile."""
    server, _ = hostile_server

    def attack() -> tuple[int, dict[str, Any]]:
        head = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        status, raw, _ = trickle(server.port, head, interval=0.05, limit_s=HEADER_TIMEOUT_S + 20)
        return status, _json(status, raw)

    status, error, took, growth = _checked(server, example, attack)
    assert status == 408 and error["type"] == "header_timeout" and error["field"] == "headers"
    assert HEADER_TIMEOUT_S - 0.5 <= took < HEADER_TIMEOUT_S + 10
    assert growth < 20 * MB


def test_trickled_headers_of_a_keep_alive_connections_next_request_get_408(
    hostile_server: tuple[Server, list[str]], example: list[float]
) -> None:
    """The deadline runs from the first byte of each request, not only a connection's first:
    after a prompt request and its answer, the next one's trickled headers get 408 too."""
    server, _ = hostile_server

    def attack() -> tuple[int, dict[str, Any]]:
        with connected(server.port, timeout=HEADER_TIMEOUT_S + 20) as sock:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            first, _ = read_status(sock)
            assert first == 200
            time.sleep(HEADER_TIMEOUT_S / 2)  # idle between requests: not the headers' time
            head = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
            status, raw, _ = trickle_on(sock, head, interval=0.05, limit_s=HEADER_TIMEOUT_S + 20)
        return status, _json(status, raw)

    status, error, took, _ = _checked(server, example, attack)
    assert status == 408 and error["type"] == "header_timeout"
    assert HEADER_TIMEOUT_S - 0.5 + HEADER_TIMEOUT_S / 2 <= took < HEADER_TIMEOUT_S + 10


def test_idle_connection_is_closed_at_the_header_deadline(
    hostile_server: tuple[Server, list[str]],
) -> None:
    """A connection that never sends a byte is answered 408 and closed, not held forever."""
    server, _ = hostile_server
    with connected(server.port, timeout=HEADER_TIMEOUT_S + 20) as sock:
        start = time.monotonic()
        raw = sock.recv(4096)
        took = time.monotonic() - start
    assert raw.startswith(b"HTTP/1.1 408")
    assert HEADER_TIMEOUT_S - 0.5 <= took < HEADER_TIMEOUT_S + 10
