"""The prediction log's writer process lives and ends with its server: a stopped server has
written every row first, a killed one leaves no writer behind."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.helpers.support import Server, child_pids, running

pytestmark = pytest.mark.e2e

WRITER = b"app.monitoring.logwriter"


def _predict(server: Server, n: int) -> list[str]:
    body = {"instances": [[0.5] * 30]}
    ids = []
    with httpx.Client(timeout=30) as http:
        for _ in range(n):
            answer = http.post(f"{server.url}/predict", json=body)
            assert answer.status_code == 200, answer.text
            ids += answer.json()["prediction_ids"]
    return ids


def _ended(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not running(pid)


def _writer_of(server: Server) -> int:
    assert server.proc is not None
    deadline = time.monotonic() + 20
    while not (writers := child_pids(server.proc.pid, WRITER)):
        assert time.monotonic() < deadline, server.logs()
        time.sleep(0.05)
    (writer,) = writers
    return writer


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_stopped_server_writes_every_row_and_its_writer_ends(
    server_factory: Callable[..., Server], tmp_path: Path, registry_path: Path, sig: int
) -> None:
    db = tmp_path / "log.db"
    server = server_factory(
        registry_path,
        env={"MODELSERVE_PREDICTION_LOG": str(db), "MODELSERVE_PREDICTION_LOG_FLUSH_MS": "10000"},
    )
    server.wait_ready()
    first = _predict(server, 1)
    with httpx.Client(timeout=30) as http:  # a label waits for its row: the first flush
        labelled = http.post(f"{server.url}/feedback", json={"prediction_id": first[0], "label": 1})
        assert labelled.status_code == 200, labelled.text
    writer = _writer_of(server)
    rest = _predict(server, 20)  # buffered: the next flush is seconds away
    if sig == signal.SIGINT:  # Ctrl-C in a terminal reaches the whole process group
        os.kill(writer, sig)
    assert server.stop(sig) == 0, server.logs()
    assert _ended(writer), server.logs()
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM predictions")}
    assert stored == set(first + rest)


def test_a_killed_server_leaves_no_writer_behind(
    server_factory: Callable[..., Server], tmp_path: Path, registry_path: Path
) -> None:
    server = server_factory(
        registry_path,
        env={"MODELSERVE_PREDICTION_LOG": str(tmp_path / "log.db")},
    )
    server.wait_ready()
    _predict(server, 3)
    writer = _writer_of(server)
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert _ended(writer)  # its input ended with the server
