"""The default prediction-log backend: SQLite in WAL mode, shared by the workers of one host."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from app.monitoring.records import (
    DuplicateFeedbackError,
    FeedbackRow,
    PredictionRow,
    StoredPrediction,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id TEXT PRIMARY KEY,
    time REAL NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    inputs TEXT NOT NULL,
    output TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS predictions_time ON predictions (time);
CREATE TABLE IF NOT EXISTS feedback (
    prediction_id TEXT PRIMARY KEY,
    time REAL NOT NULL,
    label TEXT NOT NULL,
    outcome TEXT,
    error REAL
);
CREATE INDEX IF NOT EXISTS feedback_time ON feedback (time);
"""


class SqliteBackend:
    """SQLite in WAL mode, shared by every worker process on the host.

    Two connections: the prediction writer's (``synchronous=NORMAL``: a process crash loses
    nothing committed, a power cut may lose the last commits) and the feedback connection
    (``synchronous=FULL``: the WAL is fsynced before a label is acknowledged). Both open lazily
    and reopen after an error, so a missing directory or a locked file fails writes, not start-up.
    """

    def __init__(self, path: Path, busy_timeout_s: float = 5.0) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._writer_lock = threading.Lock()
        self._reader_lock = threading.Lock()

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            self._enable_wal(conn)
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.executescript(SCHEMA)
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL, waiting out other connections doing the same.

        SQLite answers SQLITE_BUSY at once here, without its busy handler, while another
        connection is switching a fresh file: workers starting together would lose their
        first batch.
        """
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _writer_conn(self) -> sqlite3.Connection:
        if self._writer is None:
            self._writer = self._connect("NORMAL")
        return self._writer

    def _reader_conn(self) -> sqlite3.Connection:
        if self._reader is None:
            self._reader = self._connect("FULL")
        return self._reader

    def _drop(self, conn: sqlite3.Connection | None) -> None:
        if conn is not None:
            conn.close()

    def write_predictions(self, rows: Sequence[PredictionRow]) -> None:
        with self._writer_lock:
            try:
                conn = self._writer_conn()
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT OR IGNORE INTO predictions VALUES (?, ?, ?, ?, ?, ?)", rows
                )
                conn.execute("COMMIT")
            except sqlite3.Error:
                self._rollback_and_reset("writer")
                raise

    def purge(self, before: float) -> int:
        with self._writer_lock:
            try:
                conn = self._writer_conn()
                conn.execute("BEGIN IMMEDIATE")
                deleted = conn.execute("DELETE FROM predictions WHERE time < ?", (before,)).rowcount
                conn.execute("DELETE FROM feedback WHERE time < ?", (before,))
                conn.execute("COMMIT")
                return int(deleted)
            except sqlite3.Error:
                self._rollback_and_reset("writer")
                raise

    def get_predictions(self, ids: Sequence[str]) -> dict[str, StoredPrediction]:
        with self._reader_lock:
            conn = self._reader_conn()
            marks = ",".join("?" * len(ids))
            rows = conn.execute(
                f"SELECT id, time, model, version, output FROM predictions WHERE id IN ({marks})",  # noqa: S608
                list(ids),
            ).fetchall()
        return {r[0]: StoredPrediction(r[0], r[1], r[2], r[3], r[4]) for r in rows}

    def has_feedback(self, ids: Sequence[str]) -> set[str]:
        with self._reader_lock:
            conn = self._reader_conn()
            marks = ",".join("?" * len(ids))
            rows = conn.execute(
                f"SELECT prediction_id FROM feedback WHERE prediction_id IN ({marks})",  # noqa: S608
                list(ids),
            ).fetchall()
        return {r[0] for r in rows}

    def add_feedback(self, rows: Sequence[FeedbackRow]) -> None:
        with self._reader_lock:
            try:
                conn = self._reader_conn()
                conn.execute("BEGIN IMMEDIATE")
                for row in rows:
                    try:
                        conn.execute(
                            "INSERT INTO feedback VALUES (?, ?, ?, ?, ?)",
                            (row.prediction_id, row.time, row.label, row.outcome, row.error),
                        )
                    except sqlite3.IntegrityError:
                        conn.execute("ROLLBACK")
                        raise DuplicateFeedbackError(row.prediction_id) from None
                conn.execute("COMMIT")
            except sqlite3.Error:
                self._rollback_and_reset("reader")
                raise

    def _rollback_and_reset(self, which: str) -> None:
        conn = self._writer if which == "writer" else self._reader
        if conn is not None:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._drop(conn)
        if which == "writer":
            self._writer = None
        else:
            self._reader = None

    def close(self) -> None:
        with self._writer_lock:
            self._drop(self._writer)
            self._writer = None
        with self._reader_lock:
            self._drop(self._reader)
            self._reader = None
