"""The prediction log on PostgreSQL: one log shared by every replica of the service.

Same tables (``app/monitoring/schema.py``) and semantics as ``SqliteBackend``. Two lazily
opened connections per process: the prediction writer's (``synchronous_commit=off``: a
database crash may lose the last few batches, never corrupt them, like SQLite's
``synchronous=NORMAL``) and the feedback connection (``synchronous_commit=on``: a label is on
disk before it is acknowledged). Any driver error closes the connection it happened on; the
next call opens a fresh one, so a restarted or briefly unreachable database costs the calls
made meanwhile, never the process.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import psycopg
from psycopg import conninfo
from psycopg.rows import TupleRow

from app.monitoring import schema
from app.monitoring.records import (
    DuplicateFeedbackError,
    FeedbackRow,
    LogBackendError,
    PredictionRow,
    ShadowRow,
    StoredPrediction,
)

# Any constant works; it only has to be the same in every replica. CREATE ... IF NOT EXISTS
# alone is not safe when replicas start together (both may try to insert the same catalog
# row); this transaction-scoped lock makes their migrations take turns.
SCHEMA_LOCK_KEY = 0x6D6F64656C  # "model"
# Labels and shadow answers are written in turns under this lock (transaction-scoped): at READ
# COMMITTED, two transactions inserting a label and a shadow answer for the same row at once
# would each miss the other's row, and that pair would never be judged.
JUDGE_LOCK_KEY = 0x6A75646765  # "judge"

T = TypeVar("T")
Conn = psycopg.Connection[TupleRow]


def _runner(conn: Conn) -> schema.Run:
    def run(statement: str) -> list[TupleRow]:
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []

    return run


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


class PostgresBackend:
    """PostgreSQL through psycopg 3; thread-safe, one connection per role."""

    def __init__(
        self, url: str, *, connect_timeout_s: float = 5.0, statement_timeout_s: float = 10.0
    ) -> None:
        try:
            conninfo.conninfo_to_dict(url)  # a malformed URL fails start-up, not every write
        except psycopg.ProgrammingError as exc:
            raise ValueError(f"invalid PostgreSQL URL in MODELSERVE_DATABASE_URL: {exc}") from None
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self.statement_timeout_s = statement_timeout_s
        self._conns: dict[str, Conn | None] = {
            "writer": None,
            "reader": None,
        }
        self._locks = {"writer": threading.Lock(), "reader": threading.Lock()}
        self._schema_ready = False

    def _connect(self, role: str) -> Conn:
        conn = psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=max(1, round(self.connect_timeout_s)),
            application_name=f"modelserve-{role}",
        )
        try:
            # A stuck lock or a hung server fails the call after this long instead of holding
            # a request (feedback) or the writer thread forever.
            timeout_ms = int(self.statement_timeout_s * 1000)
            conn.execute(f"SET statement_timeout = {timeout_ms}")
            # Labels wait for the WAL flush whatever the server's default; predictions do not.
            sync = "off" if role == "writer" else "on"
            conn.execute(f"SET synchronous_commit = {sync}")
            if not self._schema_ready:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
                    schema.migrate(_runner(conn), schema.POSTGRES)
                self._schema_ready = True
        except BaseException:
            conn.close()
            raise
        return conn

    def _call(
        self,
        role: str,
        work: Callable[[Conn], T],
        *,
        idempotent: bool,
    ) -> T:
        """Run ``work`` on the role's connection; errors become LogBackendError.

        An idempotent call that fails on a connection opened earlier (the server may have
        restarted since) is tried once more on a new one. Feedback is not retried: its commit
        may have reached the server before the connection broke, and a retry would call the
        label a duplicate.
        """
        with self._locks[role]:
            attempts = 2 if idempotent and self._conns[role] is not None else 1
            for attempt in range(attempts):
                try:
                    conn = self._conns[role]
                    if conn is None:
                        conn = self._conns[role] = self._connect(role)
                    return work(conn)
                except psycopg.Error as exc:
                    self._drop(role)
                    if attempt + 1 == attempts:
                        raise LogBackendError(f"PostgreSQL: {exc}".strip()) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _drop(self, role: str) -> None:
        conn, self._conns[role] = self._conns[role], None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def write_predictions(self, rows: Sequence[PredictionRow]) -> None:
        self._insert_many(
            "INSERT INTO predictions VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            rows,
        )

    def _insert_many(self, statement: str, rows: Sequence[Sequence[object]]) -> None:
        """One transaction of idempotent inserts (a retry after a lost commit adds nothing)."""

        def work(conn: Conn) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(statement, rows)

        if rows:
            self._call("writer", work, idempotent=True)

    def purge(self, before: float) -> int:
        def work(conn: Conn) -> int:
            with conn.transaction():
                deleted = conn.execute("DELETE FROM predictions WHERE time < %s", (before,))
                conn.execute("DELETE FROM feedback WHERE time < %s", (before,))
                conn.execute("DELETE FROM shadow_predictions WHERE time < %s", (before,))
                return max(deleted.rowcount, 0)

        return self._call("writer", work, idempotent=True)

    def get_predictions(self, ids: Sequence[str]) -> dict[str, StoredPrediction]:
        def work(conn: Conn) -> list[TupleRow]:
            return conn.execute(
                "SELECT id, time, model, version, output FROM predictions WHERE id = ANY(%s)",
                (list(ids),),
            ).fetchall()

        rows = self._call("reader", work, idempotent=True)
        return {r[0]: StoredPrediction(r[0], r[1], r[2], r[3], r[4]) for r in rows}

    def write_shadow(self, rows: Sequence[ShadowRow]) -> list[tuple[str, str]]:
        """Idempotent: after a commit whose answer was lost, the retry inserts nothing and
        returns no labels, so none is judged twice."""

        def work(conn: Conn) -> list[tuple[str, str]]:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (JUDGE_LOCK_KEY,))
                inserted = conn.execute(
                    "INSERT INTO shadow_predictions SELECT * FROM unnest(%s::text[], "
                    "%s::double precision[], %s::text[], %s::text[], %s::text[]) "
                    "ON CONFLICT (prediction_id, version) DO NOTHING RETURNING prediction_id",
                    [list(column) for column in zip(*rows, strict=True)],
                ).fetchall()
                return [
                    (r[0], r[1])
                    for r in conn.execute(
                        "SELECT prediction_id, label FROM feedback WHERE prediction_id = ANY(%s)",
                        ([r[0] for r in inserted],),
                    ).fetchall()
                ]

        return self._call("writer", work, idempotent=True) if rows else []

    def has_feedback(self, ids: Sequence[str]) -> set[str]:
        def work(conn: Conn) -> list[TupleRow]:
            return conn.execute(
                "SELECT prediction_id FROM feedback WHERE prediction_id = ANY(%s)", (list(ids),)
            ).fetchall()

        return {r[0] for r in self._call("reader", work, idempotent=True)}

    def add_feedback(self, rows: Sequence[FeedbackRow]) -> list[StoredPrediction]:
        """All rows in one transaction; a label already stored rolls the whole batch back.

        ``ON CONFLICT DO NOTHING`` waits for a concurrent insert of the same id (another
        replica) to commit or roll back, so exactly one of two racing labels wins.
        """

        def work(conn: Conn) -> list[TupleRow]:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (JUDGE_LOCK_KEY,))
                for row in rows:
                    cur = conn.execute(
                        "INSERT INTO feedback VALUES (%s, %s, %s, %s, %s) "
                        "ON CONFLICT (prediction_id) DO NOTHING",
                        (row.prediction_id, row.time, row.label, row.outcome, row.error),
                    )
                    if cur.rowcount == 0:
                        raise DuplicateFeedbackError(row.prediction_id)  # rolls back
                return conn.execute(
                    "SELECT prediction_id, time, model, version, output FROM shadow_predictions "
                    "WHERE prediction_id = ANY(%s)",
                    ([row.prediction_id for row in rows],),
                ).fetchall()

        found = self._call("reader", work, idempotent=False) if rows else []
        return [StoredPrediction(r[0], r[1], r[2], r[3], r[4]) for r in found]

    def close(self) -> None:
        for role, lock in self._locks.items():
            with lock:
                self._drop(role)
