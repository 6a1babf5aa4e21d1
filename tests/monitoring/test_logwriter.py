"""The prediction log written by a process of its own: same rows, failures counted, deaths
survived."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from app.metrics import OP_PREDICTIONS
from app.monitoring.logpack import Batch, Entry, pack
from app.monitoring.logwriter import BackendSink, ProcessSink
from app.monitoring.predlog import PredictionLog
from app.monitoring.sqlite import SqliteBackend
from app.results import InferenceResult
from tests.helpers.support import child_pids, running

pytestmark = pytest.mark.slow  # starts writer processes


def _failures() -> float:
    labels = {"operation": OP_PREDICTIONS}
    return REGISTRY.get_sample_value("modelserve_log_write_failures_total", labels) or 0.0


def _entries(prefix: str, n: int = 30) -> list[Entry]:
    rng = np.random.default_rng(len(prefix))
    entries = []
    for i in range(n):
        proba = rng.random((1, 2))
        result = InferenceResult("m", "1", np.array([i % 3]), proba, [f"{prefix}{i}"])
        entries.append(Entry(time.time(), result, rng.random((1, 4)) * 10.0 ** (i % 9 - 4)))
    typed = InferenceResult("t", "2", np.array(["yes"]), None, [f"{prefix}typed"])
    entries.append(Entry(time.time(), typed, [["Lyon", 3, None, True]]))
    return entries


def _stored(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT * FROM predictions ORDER BY id").fetchall()


def _writers() -> set[int]:
    return child_pids(os.getpid(), b"app.monitoring.logwriter")


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[ProcessSink]:
    process = ProcessSink(None, tmp_path / "log.db")
    yield process
    process.close()


class _Exit:
    """Unpickled in the writer process, ends it there: a death in the middle of a write."""

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return os._exit, (3,)


def test_the_writer_process_stores_exactly_what_the_thread_would(
    tmp_path: Path, sink: ProcessSink
) -> None:
    entries = _entries("p")
    sink.write(pack(entries))
    BackendSink(SqliteBackend(tmp_path / "thread.db")).write(pack(entries))
    assert len(_stored(tmp_path / "log.db")) == len(entries)
    assert _stored(tmp_path / "log.db") == _stored(tmp_path / "thread.db")


def test_a_writer_killed_between_flushes_is_started_again_and_loses_nothing(
    tmp_path: Path, sink: ProcessSink
) -> None:
    sink.write(pack(_entries("a")))
    (first,) = _writers()
    os.kill(first, 9)
    os.waitid(os.P_PID, first, os.WEXITED | os.WNOWAIT)  # dead, every thread, and not reaped
    sink.write(pack(_entries("b")))
    assert _writers() - {first}
    assert len(_stored(tmp_path / "log.db")) == 2 * len(_entries("a"))


def test_a_writer_that_dies_in_a_write_loses_that_flush_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="app.monitoring.predlog")
    sink = ProcessSink(None, tmp_path / "log.db")
    plog = PredictionLog(SqliteBackend(tmp_path / "log.db"), sink=sink, flush_interval_s=0.02)
    plog.start()
    try:
        for entry in _entries("kept"):
            plog.submit(entry.result, entry.rows)
        assert plog.flush(30)
        before = _failures()
        deadly = InferenceResult("m", "1", np.array([0]), None, ["lost0", "lost1"])
        plog.submit(deadly, [[_Exit()], [1.0]])
        assert plog.flush(30)
        assert _failures() == before + 2
        for entry in _entries("after"):
            plog.submit(entry.result, entry.rows)
        assert plog.flush(30)
    finally:
        plog.stop()
    ids = {row[0] for row in _stored(tmp_path / "log.db")}
    assert {"kept0", "after0", "aftertyped"} <= ids and not ids & {"lost0", "lost1"}
    assert len(ids) == 2 * len(_entries("kept"))
    assert (
        caplog.records[0]
        .getMessage()
        .startswith(
            "prediction log: rows not written: the log writer process exited (code 3) before "
            "answering (2 rows; "
        )
    )
    assert not _writers()  # stop() ended it


def test_a_store_that_refuses_is_reported_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    sink = ProcessSink(f"sqlite:///{tmp_path / 'file' / 'log.db'}", tmp_path / "unused.db")
    try:
        with pytest.raises(Exception, match=f"SQLite {tmp_path / 'file' / 'log.db'}: "):
            sink.write(pack(_entries("x")))
        (writer,) = _writers()  # it answered, and lives on for the next flush
        assert running(writer)
    finally:
        sink.close()
    assert not _writers()


def test_a_batch_that_cannot_be_pickled_is_refused_before_the_pipe(sink: ProcessSink) -> None:
    unpicklable = Batch("m", "1", ["u"], [0.0], np.array([0]), None, [[lambda: 0]])
    with pytest.raises(Exception, match="pickle"):
        sink.write([unpicklable])
    sink.write(pack(_entries("ok")))  # the pipe is still in step
