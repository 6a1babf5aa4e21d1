"""The prediction log on a real SQLite file: batching, retention, failures that never fail a
prediction (nor flood the log), and a buffer bounded in rows and in bytes."""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app.config import Settings
from app.metrics import OP_BUFFER_FULL, OP_PREDICTIONS
from app.monitoring.backend import open_backend
from app.monitoring.predlog import PredictionLog, from_settings
from app.monitoring.records import LogBackendError, PredictionRow
from app.monitoring.sizes import entry_bytes
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


# ---- a failure that repeats every flush, and the buffer's byte bound --------------------------

PREDLOG_LOGGER = "app.monitoring.predlog"


class FullDiskBackend(SqliteBackend):
    """SQLite whose prediction writes fail, as on a full disk, while ``full`` is set."""

    full = False

    def write_predictions(self, rows: Sequence[PredictionRow]) -> None:
        if self.full:
            raise LogBackendError(f"SQLite {self.path}: database or disk is full")
        super().write_predictions(rows)


def _lines(caplog: pytest.LogCaptureFixture, logger: str = PREDLOG_LOGGER) -> list[str]:
    return [
        f"{r.levelname} {r.getMessage()}"
        for r in caplog.records
        if r.name == logger and r.levelno >= logging.WARNING
    ]


def test_a_write_failure_every_flush_is_logged_at_its_start_and_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue #26: a full disk logged one error per flush (53 lines in 8 s). Now: one line when
    it starts, one when it ends; the metric still counts every row."""
    caplog.set_level(logging.INFO, logger=PREDLOG_LOGGER)
    db = tmp_path / "log.db"
    backend = FullDiskBackend(db)
    with _started(PredictionLog(backend, flush_interval_s=0.01)) as plog:
        _submit(plog, 1, "warm")
        assert plog.flush(10)
        before = _failures(OP_PREDICTIONS)
        backend.full = True
        lost: list[str] = []
        for i in range(60):  # 60 flushes of 2 rows, each refused
            lost += _submit(plog, 2, f"lost{i}-")
            assert plog.flush(10)
        assert _failures(OP_PREDICTIONS) == before + 120
        assert _lines(caplog) == [
            f"ERROR prediction log: rows not written: SQLite {db}: database or disk is full "
            "(2 rows; repeats are logged at most every 60 s until it recovers)"
        ]
        backend.full = False
        kept = _submit(plog, 3, "kept")
        assert plog.flush(10)
        more = _submit(plog, 3, "more")
        assert plog.flush(10)
    assert len(_lines(caplog)) == 2
    assert _lines(caplog)[1].startswith(
        "WARNING prediction log: rows not written: recovered after 120 rows in "
    )
    stored = SqliteBackend(db).get_predictions(lost + kept + more)
    assert set(stored) == set(kept + more)  # written again without a restart; the lost are lost


def test_a_retention_purge_that_keeps_failing_is_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=PREDLOG_LOGGER)
    backend = SqliteBackend(tmp_path / "log.db")
    calls: list[float] = []

    def purge(before: float) -> int:
        calls.append(before)
        raise LogBackendError("database or disk is full")

    backend.purge = purge  # type: ignore[method-assign]
    plog = PredictionLog(backend, flush_interval_s=0.01, retention_s=3600, retention_check_s=0)
    with _started(plog):
        deadline = time.monotonic() + 10
        while len(calls) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(calls) >= 20
    assert _lines(caplog) == [
        "ERROR prediction log: retention purge failed: database or disk is full "
        "(repeats are logged at most every 60 s until it recovers)"
    ]


def _typed_rows(n: int, text: str) -> list[list[object]]:
    return [[text, 1.5, None, 3] for _ in range(n)]


def _answer(ids: list[str]) -> InferenceResult:
    n = len(ids)
    return InferenceResult("m", "1", np.zeros(n, dtype=np.int64), np.full((n, 2), 0.5), ids)


def test_the_buffer_is_bounded_in_bytes_and_counts_what_it_drops(
    tmp_path: Path, registry_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue #26: bounded in rows only, 20,000 rows of 4 KiB strings were 80 MiB per worker.
    With MODELSERVE_PREDICTION_LOG_BUFFER_BYTES, rows past the bytes bound are dropped (counted
    per row, logged once) although far under the rows bound; written rows free their bytes."""
    caplog.set_level(logging.INFO, logger=PREDLOG_LOGGER)
    db = tmp_path / "log.db"
    settings = Settings(
        registry=registry_path,
        prediction_log=db,
        prediction_log_buffer_rows=20_000,
        prediction_log_buffer_bytes=1024 * 1024,
    )
    plog = from_settings(settings)
    assert plog is not None
    before = _failures(OP_BUFFER_FULL)
    text = "x" * 4096
    accepted: list[str] = []
    for i in range(400):  # 400 requests of 2 rows of 4 KiB: 3.2 MiB, not started: none written
        ids = [f"r{i}-0", f"r{i}-1"]
        plog.submit(_answer(ids), _typed_rows(2, text))
        if _failures(OP_BUFFER_FULL) == before:
            accepted += ids
    rows = len(accepted)
    assert 200 <= rows <= 256  # 1 MiB of ~4.2 KiB rows (800 rows before: 3.3 MiB)
    assert _failures(OP_BUFFER_FULL) == before + 800 - rows  # every dropped row counted
    assert plog.buffered[0] == rows and plog.buffered[1] <= 1024 * 1024
    [dropped] = _lines(caplog)
    assert dropped.startswith("ERROR prediction log: buffer full, rows dropped: ")
    assert "the bounds are 20000 rows and 1048576 bytes" in dropped
    plog.start()
    try:
        assert plog.flush(10)
        assert plog.buffered == (0, 0)  # written: its bytes are free again
        plog.submit(_answer(["after"]), _typed_rows(1, text))
        assert plog.flush(10)
    finally:
        plog.stop()
    assert _lines(caplog)[1].startswith(
        f"WARNING prediction log: buffer full, rows dropped: recovered after {800 - rows} rows"
    )
    assert _count(db) == rows + 1


def test_rows_being_written_still_count_against_the_bounds(tmp_path: Path) -> None:
    """The writer's batch is memory too: its rows and bytes leave the bounds once written (or
    dropped), not when the writer takes them."""
    backend = SqliteBackend(tmp_path / "log.db")
    writing, release = threading.Event(), threading.Event()
    real = backend.write_predictions

    def slow_write(rows: Sequence[PredictionRow]) -> None:
        writing.set()
        release.wait(10)
        real(rows)

    backend.write_predictions = slow_write  # type: ignore[method-assign]
    plog = PredictionLog(backend, flush_interval_s=0.01, max_buffered_rows=5)
    with _started(plog):
        _submit(plog, 4, "a")
        assert writing.wait(10)  # the writer holds the 4 rows
        before = _failures(OP_BUFFER_FULL)
        _submit(plog, 2, "b")  # 4 + 2 > 5
        assert _failures(OP_BUFFER_FULL) == before + 2
        assert plog.buffered[0] == 4
        release.set()
        assert plog.flush(10)
        assert plog.buffered == (0, 0)
        _submit(plog, 5, "c")
        assert plog.flush(10)
    assert _count(tmp_path / "log.db") == 9


def _deep_size(result: InferenceResult, rows: object) -> int:
    """What the entry really holds, object by object (sys.getsizeof)."""
    size = result.predictions.nbytes + sum(map(sys.getsizeof, result.prediction_ids))
    if result.probabilities is not None:
        size += result.probabilities.nbytes
    if isinstance(rows, np.ndarray):
        return size + rows.nbytes
    assert isinstance(rows, list)
    return size + sum(sys.getsizeof(r) + sum(map(sys.getsizeof, r)) for r in rows)


@pytest.mark.parametrize(
    "rows",
    [
        np.zeros((100, 30)),  # a numeric model's matrix
        [["a" * 4096, 1.5, "b", 2.0] for _ in range(100)],  # long strings
        [["red", 1.5, None, 7, True, "a much longer category name"] for _ in range(100)],
        [["é" * 1000, "半径" * 500] for _ in range(100)],  # non-ASCII: 2 and 4 bytes a character
    ],
    ids=["matrix", "long-strings", "short-values", "non-ascii"],
)
def test_entry_bytes_is_close_to_what_the_rows_hold(rows: object) -> None:
    ids = [f"{i:032x}" for i in range(100)]
    result = _answer(ids)
    estimate, real = entry_bytes(result, rows), _deep_size(result, rows)
    assert 0.9 * real <= estimate <= 3 * real, (estimate, real)


def test_entry_bytes_of_object_matrices_and_data_frames_counts_their_strings() -> None:
    ids = [f"{i:032x}" for i in range(10)]
    result = _answer(ids)
    short = pd.DataFrame({"x": np.arange(10.0), "colour": ["r"] * 10})
    long = pd.DataFrame({"x": np.arange(10.0), "colour": ["r" * 10_000] * 10})
    assert entry_bytes(result, long) - entry_bytes(result, short) == 10 * 9_999
    assert entry_bytes(result, long.to_numpy(dtype=object)) >= 10 * 10_000
    assert entry_bytes(result, short.to_numpy(dtype=object)) < 10 * 1_000
