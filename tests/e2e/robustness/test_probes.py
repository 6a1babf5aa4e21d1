"""Probes from outside against a real server: names no model can have, control characters in
URLs, clients that hang up mid-request. Each is a 4xx (or nothing at all), one log line, and
no new metric label value; none is a server error."""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.helpers.promtext import label_values, samples, total
from tests.helpers.support import Server, copy_registry

pytestmark = pytest.mark.e2e
LINE_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+ ")
BODY_ROUTES = [
    "/predict",
    "/v1/models/breast-cancer:predict",
    "/v2/models/breast-cancer/infer",
    "/v2/models/breast-cancer/versions/1/infer",
    "/invocations",
    "/feedback",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("probes")
    registry = copy_registry(tmp / "models")
    env = {"MODELSERVE_POLL_INTERVAL_S": "0", "MODELSERVE_LOG_FORMAT": "text"}
    with Server(registry, workdir=tmp, env=env) as started:
        started.wait_ready()
        yield started


def _metrics(server: Server) -> str:
    return httpx.get(server.url + "/metrics", timeout=10).text


def server_errors(text: str) -> list[str]:
    """The 5xx answers counted, apart from /health/ready's 503 while the server was starting."""
    return [
        f"{s.labels['handler']} {s.labels['status']}"
        for s in samples(text, "http_requests_total")
        if s.labels["status"].startswith("5") and not s.labels["handler"].startswith("/health/")
    ]


def _wait_for(what: str, check: object, timeout: float = 10.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def test_a_name_longer_than_a_file_name_is_404(server: Server) -> None:
    for name in ("a" * 300, "a" * 129, "a" * 4096):
        response = httpx.get(f"{server.url}/models/{name}", timeout=10)
        assert response.status_code == 404, response.text[:200]
        assert response.json()["error"]["type"] == "unknown_model"


def test_long_names_on_v2_routes_are_404_and_never_label_values(server: Server) -> None:
    names = [uuid.uuid4().hex * 10 for _ in range(100)]
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for name in ("nope", *names):
            if name == names[0]:  # after one unknown name: its routes and labels are known
                before = _metrics(server)
            for path in (f"/v2/models/{name}/versions/1", f"/v2/models/{name}"):
                response = client.get(path)
                assert response.status_code == 404, (path[:60], response.text[:200])
            response = client.get(f"/v2/models/breast-cancer/versions/{'1' * len(name)}")
            assert response.status_code == 404, response.text[:200]
            response = client.post(f"/v2/models/{name}/versions/1/infer", json={"inputs": []})
            assert response.status_code == 404, response.text[:200]
    after = _metrics(server)
    assert label_values(after) <= label_values(before)
    assert not any(name[:32] in after for name in names)
    assert not server_errors(after)


def test_a_trailing_slash_is_404_and_never_a_label_value(server: Server) -> None:
    name = uuid.uuid4().hex
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for path in (f"/models/{name}/", f"/models/{name}/invocations/", "/models/"):
            response = client.get(path)
            assert response.status_code == 404, (path, response.status_code)
    assert name not in _metrics(server)


def test_every_control_character_in_a_url_stays_on_one_log_line(server: Server) -> None:
    forged = (
        "x\r\n2026-01-01 00:00:00,000 INFO modelserve.access request request_id=forged status=200"
    )
    controls = "".join(chr(c) for c in (*range(0x20), 0x7F, 0x85, 0x2028)) + "\x1b[31mred"
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for text in (forged, controls):
            client.get("/models/" + quote(text, safe=""))
            client.post("/v1/models/" + quote(text, safe="") + ":predict", json={})
        client.get("/models/end-of-probe")
    _wait_for("the last access line", lambda: "path=/models/end-of-probe" in server.logs())
    raw = server.log_path.read_bytes()
    assert not re.search(rb"[\x00-\x09\x0b-\x1f\x7f]", raw), "a raw control byte in the log"
    lines = raw.decode().split("\n")[:-1]
    assert all(LINE_START.match(line) for line in lines), [
        line for line in lines if not LINE_START.match(line)
    ][:3]
    assert not any("\x85" in line or "\u2028" in line for line in lines)
    assert not any(line.startswith("2026-01-01") for line in lines), "a forged line"
    escaped = [line for line in lines if "x\\r\\n2026-01-01" in line]
    assert len(escaped) == 2 and all("status=404" in line for line in escaped)


def _cut_short(port: int, path: str, head: bytes, sent: bytes) -> None:
    """Send a request up to some point, then hang up without reading anything."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\n".encode() + head + sent)
        time.sleep(0.05)


def _stages(length: int) -> dict[str, tuple[bytes, bytes]]:
    typed = b"Host: x\r\nContent-Type: application/json\r\n"
    fixed = typed + f"Content-Length: {length}\r\n\r\n".encode()
    chunked = typed + b"Transfer-Encoding: chunked\r\n\r\n"
    return {
        "in the headers": (b"Host: x\r\nContent-Ty", b""),
        "after the headers": (fixed, b""),
        "mid body": (fixed, b'{"instance'),
        "one byte short": (fixed, b"{" * (length - 1)),
        "mid chunk": (chunked, b'400\r\n{"inst'),
        "after a chunk": (chunked, b'a\r\n{"instance\r\n'),
    }


def test_clients_hanging_up_at_every_stage_are_no_server_error(server: Server) -> None:
    length = 1024
    for path in BODY_ROUTES:
        for head, sent in _stages(length).values():
            _cut_short(server.port, path, head, sent)
    # Every stage that reached a route is one 499 per route; headers cut short reach none.
    expected = len(BODY_ROUTES) * (len(_stages(length)) - 1)

    def counted() -> bool:
        return total(_metrics(server), "http_requests_total", {"status": "499"}) >= expected

    _wait_for(f"{expected} requests counted as 499", counted)
    text = _metrics(server)
    assert not server_errors(text)
    log = server.logs()
    assert "Traceback" not in log and " ERROR " not in log
    assert log.count("client disconnected before the request body was complete") >= expected
    hung_up = [line for line in log.splitlines() if "status=499" in line]
    assert hung_up and all(" INFO modelserve.access " in line for line in hung_up)
    errors = samples(text, "modelserve_prediction_errors_total")
    assert any(s.labels["reason"] == "client_disconnected" for s in errors)


def test_the_issue_reproduction_of_a_dropped_upload(server: Server, tmp_path: Path) -> None:
    """``curl -m1 -H 'Content-Length: 1048576' --data-binary '{"instance'`` (1 MiB declared)."""
    before = total(_metrics(server), "http_requests_total", {"status": "499"})
    head = b"Host: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"
    _cut_short(server.port, "/predict", head, b'{"instance')

    def counted() -> bool:
        return total(_metrics(server), "http_requests_total", {"status": "499"}) > before

    _wait_for("the dropped upload counted as 499", counted)
    assert not server_errors(_metrics(server))
