"""The default prediction-log backend: SQLite in WAL mode, shared by the workers of one host."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import orjson

from app.monitoring import schema
from app.monitoring.records import (
    DuplicateFeedbackError,
    FeedbackRow,
    LogBackendError,
    PredictionRow,
    ShadowRow,
    StoredPrediction,
)

T = TypeVar("T")
SYNCHRONOUS = {"writer": "NORMAL", "reader": "FULL"}
# SQLite's ->> (3.38) lets one statement insert a whole batch sent as one JSON array.
JSON_BATCHES = sqlite3.sqlite_version_info >= (3, 38, 0)


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction; the write lock is taken at BEGIN, so it never fails half-way
    for want of it (a deferred transaction can be refused the upgrade without waiting)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _runner(conn: sqlite3.Connection) -> schema.Run:
    return lambda statement: conn.execute(statement).fetchall()


class SqliteBackend:
    """SQLite in WAL mode, shared by every worker process on the host.

    Two connections: the prediction writer's (``synchronous=NORMAL``: a process crash loses
    nothing committed, a power cut may lose the last commits) and the feedback connection
    (``synchronous=FULL``: the WAL is fsynced before a label is acknowledged). Both open lazily
    and reopen after an error, so a missing directory or a locked file fails writes, not start-up.
    Driver errors surface as ``LogBackendError``, as on PostgreSQL.
    """

    def __init__(self, path: Path, busy_timeout_s: float = 5.0) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._conns: dict[str, sqlite3.Connection | None] = {"writer": None, "reader": None}
        self._locks = {"writer": threading.Lock(), "reader": threading.Lock()}

    def _connect(self, role: str) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            self._enable_wal(conn)
            conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[role]}")
            self._ensure_schema(conn)
        except BaseException:
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

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        """Migrate under the write lock, which makes workers starting together take turns.

        The version is read first without the lock, so reconnecting to an up-to-date log
        does not queue behind another process's write transaction.
        """
        run = _runner(conn)
        if schema.current_version(run, schema.SQLITE) == schema.LATEST_VERSION:
            return
        with _immediate(conn):
            schema.migrate(run, schema.SQLITE)

    def _call(self, role: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the role's connection; a driver error drops it for the next call."""
        with self._locks[role]:
            try:
                conn = self._conns[role]
                if conn is None:
                    conn = self._conns[role] = self._connect(role)
                return work(conn)
            except (sqlite3.Error, OSError) as exc:
                self._drop(role)
                raise LogBackendError(f"SQLite {self.path}: {exc}") from exc

    def _drop(self, role: str) -> None:
        conn, self._conns[role] = self._conns[role], None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def write_predictions(self, rows: Sequence[PredictionRow]) -> None:
        self._insert_many("predictions", 6, rows)

    def _insert_many(self, table: str, columns: int, rows: Sequence[Sequence[object]]) -> None:
        """One write transaction of idempotent inserts on the writer's connection.

        The batch goes as one JSON array into one statement (SQLite 3.38 and later; row by row
        before): ``executemany`` over the rows takes the GIL back for every row (to bind it)
        between the row's steps, which gives the GIL to and from the event loop hundreds of
        times per flush; this takes it back once.
        """
        if not rows:
            return
        params: Sequence[Sequence[object]] = rows
        if JSON_BATCHES:
            fields = ", ".join(f"value->>{i}" for i in range(columns))
            statement = f"INSERT OR IGNORE INTO {table} SELECT {fields} FROM json_each(?)"  # noqa: S608
            params = [(orjson.dumps(rows).decode(),)]
        else:
            statement = f"INSERT OR IGNORE INTO {table} VALUES ({', '.join('?' * columns)})"  # noqa: S608

        def work(conn: sqlite3.Connection) -> None:
            with _immediate(conn):
                conn.executemany(statement, params)

        self._call("writer", work)

    def purge(self, before: float) -> int:
        def work(conn: sqlite3.Connection) -> int:
            with _immediate(conn):
                deleted = conn.execute("DELETE FROM predictions WHERE time < ?", (before,))
                conn.execute("DELETE FROM feedback WHERE time < ?", (before,))
                conn.execute("DELETE FROM shadow_predictions WHERE time < ?", (before,))
            return int(deleted.rowcount)

        return self._call("writer", work)

    def get_predictions(self, ids: Sequence[str]) -> dict[str, StoredPrediction]:
        def work(conn: sqlite3.Connection) -> list[tuple[str, float, str, str, str]]:
            marks = ",".join("?" * len(ids))
            return conn.execute(
                f"SELECT id, time, model, version, output FROM predictions WHERE id IN ({marks})",  # noqa: S608
                list(ids),
            ).fetchall()

        rows = self._call("reader", work)
        return {r[0]: StoredPrediction(r[0], r[1], r[2], r[3], r[4]) for r in rows}

    def write_shadow(self, rows: Sequence[ShadowRow]) -> list[tuple[str, str]]:
        def work(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            with _immediate(conn):
                inserted = _insert_shadow(conn, rows)
                marks = ",".join("?" * len(inserted))
                query = (
                    f"SELECT prediction_id, label FROM feedback WHERE prediction_id IN ({marks})"  # noqa: S608
                )
                return conn.execute(query, inserted).fetchall() if inserted else []

        return self._call("writer", work) if rows else []

    def has_feedback(self, ids: Sequence[str]) -> set[str]:
        def work(conn: sqlite3.Connection) -> list[tuple[str]]:
            marks = ",".join("?" * len(ids))
            return conn.execute(
                f"SELECT prediction_id FROM feedback WHERE prediction_id IN ({marks})",  # noqa: S608
                list(ids),
            ).fetchall()

        return {r[0] for r in self._call("reader", work)}

    def add_feedback(self, rows: Sequence[FeedbackRow]) -> list[StoredPrediction]:
        """All rows in one transaction; a label already stored rolls the whole batch back."""

        def work(conn: sqlite3.Connection) -> list[tuple[str, float, str, str, str]]:
            with _immediate(conn):
                for row in rows:
                    try:
                        conn.execute(
                            "INSERT INTO feedback VALUES (?, ?, ?, ?, ?)",
                            (row.prediction_id, row.time, row.label, row.outcome, row.error),
                        )
                    except sqlite3.IntegrityError:
                        raise DuplicateFeedbackError(row.prediction_id) from None
                marks = ",".join("?" * len(rows))
                columns = "prediction_id, time, model, version, output"
                query = f"SELECT {columns} FROM shadow_predictions WHERE prediction_id IN ({marks})"  # noqa: S608
                return conn.execute(query, [row.prediction_id for row in rows]).fetchall()

        return [StoredPrediction(*r) for r in self._call("reader", work)] if rows else []

    def close(self) -> None:
        for role, lock in self._locks.items():
            with lock:
                self._drop(role)


def _insert_shadow(conn: sqlite3.Connection, rows: Sequence[ShadowRow]) -> list[str]:
    """Insert the rows not stored yet (same id and version); the ids of those inserted."""
    if JSON_BATCHES:
        fields = ", ".join(f"value->>{i}" for i in range(5))
        statement = (
            f"INSERT OR IGNORE INTO shadow_predictions SELECT {fields} FROM json_each(?) "  # noqa: S608
            "RETURNING prediction_id"
        )
        return [r[0] for r in conn.execute(statement, (orjson.dumps(rows).decode(),))]
    inserted = []
    for row in rows:
        statement = "INSERT OR IGNORE INTO shadow_predictions VALUES (?, ?, ?, ?, ?)"
        if conn.execute(statement, row).rowcount:
            inserted.append(row[0])
    return inserted
