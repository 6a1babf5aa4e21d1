"""The prediction log on a real SQLite file: batching, retention, and failures that never fail
a prediction."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app.metrics import OP_BUFFER_FULL, OP_PREDICTIONS
from app.monitoring.backend import open_backend
from app.monitoring.predlog import PredictionLog
from app.monitoring.sqlite import SqliteBackend
from app.results import InferenceResult


def _failures(operation: str) -> float:
    labels = {"operation": operation}
    return REGISTRY.get_sample_value("modelserve_log_write_failures_total", labels) or 0.0


def _submit(plog: PredictionLog, n: int, prefix: str = "p") -> list[str]:
    ids = [f"{prefix}{i}" for i in range(n)]
    rows = np.arange(n * 2, dtype=np.float64).reshape(n, 2)
    plog.submit(InferenceResult("m", "3", np.arange(n) % 2, np.full((n, 2), 0.5), ids), rows)
    return ids


@contextmanager
def _started(plog: PredictionLog) -> Iterator[PredictionLog]:
    plog.start()
    try:
        yield plog
    finally:
        plog.stop()


@contextmanager
def _exclusive_lock(db: Path) -> Iterator[None]:
    """Another process-like writer holding the database: every other write gets SQLITE_BUSY."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def _count(db: Path, table: str = "predictions") -> int:
    with sqlite3.connect(db) as conn:
        count: int = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return count


def test_rows_are_written_with_inputs_and_output(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "log.db"
    with _started(PredictionLog(SqliteBackend(db), flush_interval_s=0.05)) as plog:
        ids = _submit(plog, 3)
        assert plog.flush(10)
        stored = plog.backend.get_predictions(ids)
    assert set(stored) == set(ids)
    with sqlite3.connect(db) as conn:
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        inputs, output = conn.execute(
            "SELECT inputs, output FROM predictions WHERE id = 'p1'"
        ).fetchone()
    assert journal == "wal"
    assert orjson.loads(inputs) == [2.0, 3.0]
    assert orjson.loads(output) == {"prediction": 1, "probabilities": [0.5, 0.5]}


def test_stop_writes_what_is_buffered(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    plog = PredictionLog(SqliteBackend(db), flush_interval_s=5.0)
    plog.start()
    _submit(plog, 4)
    plog.stop()
    assert _count(db) == 4


def test_retention_purges_old_rows(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    backend = SqliteBackend(db)
    old = time.time() - 7200
    backend.write_predictions([("old", old, "m", "1", "[]", "{}")])
    backend.write_predictions([("new", time.time(), "m", "1", "[]", "{}")])
    plog = PredictionLog(backend, flush_interval_s=0.05, retention_s=3600, retention_check_s=0)
    with _started(plog):
        deadline = time.monotonic() + 10
        while _count(db) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert set(SqliteBackend(db).get_predictions(["old", "new"])) == {"new"}


def test_locked_database_counts_failures_then_recovers(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    plog = PredictionLog(SqliteBackend(db, busy_timeout_s=0.2), flush_interval_s=0.05)
    with _started(plog):
        _submit(plog, 1, "warm")
        assert plog.flush(10)
        before = _failures(OP_PREDICTIONS)
        with _exclusive_lock(db):
            _submit(plog, 5, "lost")
            assert plog.flush(10)  # finished with them: dropped, not stuck
        assert _failures(OP_PREDICTIONS) == before + 5
        kept = _submit(plog, 2, "kept")
        assert plog.flush(10)
        assert set(plog.backend.get_predictions(kept)) == set(kept)


def test_full_buffer_drops_and_counts(tmp_path: Path) -> None:
    plog = PredictionLog(SqliteBackend(tmp_path / "log.db"), max_buffered_rows=3)
    before = _failures(OP_BUFFER_FULL)
    _submit(plog, 2, "a")  # not started: nothing drains the buffer
    _submit(plog, 2, "b")
    assert _failures(OP_BUFFER_FULL) == before + 2
    plog.start()
    plog.stop()
    assert _count(tmp_path / "log.db") == 2


def test_unsupported_database_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'mysql' is not supported"):
        open_backend("mysql://db/modelserve", tmp_path / "x.db")
    backend = open_backend(f"sqlite:///{tmp_path}/y.db", tmp_path / "x.db")
    assert isinstance(backend, SqliteBackend)
    assert backend.path == tmp_path / "y.db"


def test_predictions_answer_while_the_log_is_locked(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    db = tmp_path / "locked" / "predictions.db"
    client = make_client(prediction_log=db, prediction_log_flush_ms=50)
    row = client.get("/models/breast-cancer").json()["metadata"][0]["example"]
    first = client.post("/predict", json={"instances": [row]})
    assert first.status_code == 200
    fb = client.post(
        "/feedback", json={"prediction_id": first.json()["prediction_ids"][0], "label": 0}
    )
    assert fb.status_code == 200  # the log works: the database exists now
    before = _failures(OP_PREDICTIONS)
    feedback_before = _failures("feedback")
    with _exclusive_lock(db):
        answered = [client.post("/predict", json={"instances": [row] * 2}) for _ in range(3)]
        assert [r.status_code for r in answered] == [200, 200, 200]
        deadline = time.monotonic() + 30
        while _failures(OP_PREDICTIONS) < before + 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _failures(OP_PREDICTIONS) == before + 6
        pid = answered[0].json()["prediction_ids"][0]
        locked = client.post("/feedback", json={"prediction_id": pid, "label": 0})
    # Its prediction was never logged (the write failed), so it is either refused as
    # unavailable while locked or unknown afterwards: never a 500.
    assert locked.status_code in (404, 503), locked.text
    assert locked.status_code == 404 or _failures("feedback") == feedback_before + 1
    after = client.post("/predict", json={"instances": [row]})
    pid = after.json()["prediction_ids"][0]
    assert client.post("/feedback", json={"prediction_id": pid, "label": 0}).status_code == 200
