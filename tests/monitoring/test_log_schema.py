"""Schema versions of the prediction log on SQLite and a real PostgreSQL (skipped if not
installed); the "old" logs use the DDL and inserts of the code before versions, verbatim."""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.monitoring import schema
from app.monitoring.backend import open_backend
from app.monitoring.records import DuplicateFeedbackError, FeedbackRow, LogBackend, LogBackendError
from app.monitoring.sqlite import SqliteBackend
from tests.helpers.postgres import fresh_database

OLD_SQLITE_DDL = """
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

OLD_POSTGRES_DDL = (
    """CREATE TABLE IF NOT EXISTS predictions (
        id TEXT PRIMARY KEY,
        time DOUBLE PRECISION NOT NULL,
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        inputs TEXT NOT NULL,
        output TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS predictions_time ON predictions (time)",
    """CREATE TABLE IF NOT EXISTS feedback (
        prediction_id TEXT PRIMARY KEY,
        time DOUBLE PRECISION NOT NULL,
        label TEXT NOT NULL,
        outcome TEXT,
        error DOUBLE PRECISION
    )""",
    "CREATE INDEX IF NOT EXISTS feedback_time ON feedback (time)",
)

OUTPUT = '{"prediction": 1, "probabilities": [0.25, 0.75]}'
NOW = time.time()
OLD_ROWS = [(f"old-{k}", NOW - 60 + k, "iris", "1", "[1.5, 2.0]", OUTPUT) for k in range(3)]
OLD_LABEL = ("old-0", NOW - 30, "1", "correct", None)
OLD_INDEXES = {"predictions_time", "feedback_time"}
NEW_INDEXES = {"predictions_model_time", "shadow_predictions_time"}
TABLES = ("predictions", "feedback")

INDEXES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
    "postgres": "SELECT indexname FROM pg_indexes "
    "WHERE schemaname = current_schema() AND indexname NOT LIKE '%_pkey'",
}
COLUMNS = {
    "sqlite": "SELECT name, type, \"notnull\", pk FROM pragma_table_info('{table}')",
    "postgres": "SELECT column_name, data_type, is_nullable, column_default "
    "FROM information_schema.columns WHERE table_schema = current_schema() "
    "AND table_name = '{table}' ORDER BY ordinal_position",
}


def _write_old_sqlite_log(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(OLD_SQLITE_DDL)
        conn.executemany("INSERT OR IGNORE INTO predictions VALUES (?, ?, ?, ?, ?, ?)", OLD_ROWS)
        conn.execute("INSERT INTO feedback VALUES (?, ?, ?, ?, ?)", OLD_LABEL)


def _write_old_postgres_log(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in OLD_POSTGRES_DDL:
            conn.execute(statement)
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO predictions VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO NOTHING",
                OLD_ROWS,
            )
            cur.execute(
                "INSERT INTO feedback VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (prediction_id) DO NOTHING",
                OLD_LABEL,
            )


class Store:
    """One log database seen from outside the backend, as an operator's SQL client sees it."""

    def __init__(self, url: str, closing: contextlib.ExitStack) -> None:
        self.url, self.closing = url, closing
        self.path = Path(url.removeprefix("sqlite:///"))
        self.kind = "sqlite" if url.startswith("sqlite:///") else "postgres"

    def open(self) -> LogBackend:
        """A new backend on this log (its own connections, like another worker or replica)."""
        backend = open_backend(self.url, Path("unused.db"))
        self.closing.callback(backend.close)
        return backend

    def write_old_log(self) -> None:
        """Tables, rows and a label exactly as the code from before versions wrote them."""
        if self.kind == "sqlite":
            _write_old_sqlite_log(self.path)
        else:
            _write_old_postgres_log(self.url)

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
                return conn.execute(statement).fetchall()
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []

    def indexes(self) -> set[str]:
        return {row[0] for row in self.sql(INDEXES[self.kind])}

    def columns(self, table: str) -> list[tuple[Any, ...]]:
        return self.sql(COLUMNS[self.kind].format(table=table))

    def versions(self) -> list[int]:
        return [row[0] for row in self.sql("SELECT version FROM schema_version")]


NewStore = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgres"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NewStore]:
    """Fresh empty logs of one kind (a new file, or a new PostgreSQL database)."""
    names = itertools.count()
    with contextlib.ExitStack() as stack:

        def make() -> Store:
            if request.param == "sqlite":
                return Store(f"sqlite:///{tmp_path}/log{next(names)}.db", stack)
            server = request.getfixturevalue("pg_server")
            return Store(stack.enter_context(fresh_database(server)), stack)

        yield make


@pytest.fixture
def migrations_run(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every non-empty list of migration statements a backend went on to run."""
    seen: list[list[str]] = []
    original = schema.statements_for

    def recording(dialect: schema.Dialect, from_version: int) -> list[str]:
        seen.extend([statements] if (statements := original(dialect, from_version)) else [])
        return statements

    monkeypatch.setattr(schema, "statements_for", recording)
    return seen


def _label(pid: str) -> FeedbackRow:
    return FeedbackRow(pid, time.time(), "0", "incorrect", None)


def test_a_log_from_before_versions_is_migrated_and_keeps_its_rows(new_store: NewStore) -> None:
    store = new_store()
    store.write_old_log()
    layout = [store.columns(t) for t in TABLES]
    backend = store.open()
    stored = backend.get_predictions([row[0] for row in OLD_ROWS])
    assert store.versions() == [schema.LATEST_VERSION]
    assert store.indexes() == OLD_INDEXES | NEW_INDEXES
    assert [store.columns(t) for t in TABLES] == layout
    assert sorted((p.id, p.time, p.model, p.version, p.output) for p in stored.values()) == [
        (pid, at, model, version, output) for pid, at, model, version, _, output in OLD_ROWS
    ]
    assert backend.has_feedback(["old-0", "old-1"]) == {"old-0"}
    with pytest.raises(DuplicateFeedbackError):
        backend.add_feedback([_label("old-0")])
    backend.add_feedback([_label("old-1")])
    backend.write_predictions([("new", time.time(), "breast-cancer", "2", "[0.0, 1.0]", OUTPUT)])
    again = store.open()
    assert set(again.get_predictions(["old-2", "new"])) == {"old-2", "new"}
    assert again.has_feedback(["old-0", "old-1", "new"]) == {"old-0", "old-1"}


def test_a_fresh_log_gets_the_latest_version_in_the_old_layout_once(
    new_store: NewStore, migrations_run: list[list[str]]
) -> None:
    old, fresh = new_store(), new_store()
    old.write_old_log()
    fresh.open().write_predictions([OLD_ROWS[0]])
    assert fresh.versions() == [schema.LATEST_VERSION]
    assert fresh.indexes() == OLD_INDEXES | NEW_INDEXES
    assert [fresh.columns(t) for t in TABLES] == [old.columns(t) for t in TABLES]
    for k in (1, 2):  # up to date: opened again, nothing is migrated
        backend = fresh.open()
        backend.write_predictions([OLD_ROWS[k]])
        backend.add_feedback([_label(OLD_ROWS[k][0])])
    assert len(migrations_run) == 1


def test_a_log_from_a_newer_modelserve_is_refused_and_left_alone(new_store: NewStore) -> None:
    store = new_store()
    store.open().write_predictions([OLD_ROWS[0]])
    newer = schema.LATEST_VERSION + 1
    store.sql(f"UPDATE schema_version SET version = {newer}")
    backend = store.open()
    message = rf"schema version {newer}, newer than .* knows \({schema.LATEST_VERSION}\)"
    with pytest.raises(schema.SchemaVersionError, match=message):
        backend.write_predictions([OLD_ROWS[1]])
    with pytest.raises(LogBackendError, match=message):
        backend.get_predictions([OLD_ROWS[0][0]])
    assert store.versions() == [newer]
    assert store.sql("SELECT id FROM predictions") == [(OLD_ROWS[0][0],)]


def _first_writes_together(backends: list[LogBackend], prefix: str) -> list[str]:
    ids = [f"{prefix}-{k}" for k in range(len(backends))]
    barrier = threading.Barrier(len(backends))

    def first_write(backend: LogBackend, row_id: str) -> None:
        barrier.wait(30)
        backend.write_predictions([(row_id, time.time(), "m", "1", "[]", "{}")])

    with ThreadPoolExecutor(len(backends)) as pool:
        for write in [pool.submit(first_write, *pair) for pair in zip(backends, ids, strict=True)]:
            write.result(60)
    return ids


def test_openers_racing_on_a_fresh_log_share_one_schema(
    new_store: NewStore, migrations_run: list[list[str]]
) -> None:
    for attempt in range(3):
        store = new_store()
        backends = [store.open() for _ in range(4)]
        ids = _first_writes_together(backends, f"r{attempt}")
        assert len(migrations_run) == attempt + 1
        assert store.versions() == [schema.LATEST_VERSION]
        assert set(backends[0].get_predictions(ids)) == set(ids)


CALLS: dict[str, Callable[[LogBackend], object]] = {
    "write_predictions": lambda b: b.write_predictions([OLD_ROWS[0]]),
    "purge": lambda b: b.purge(time.time()),
    "get_predictions": lambda b: b.get_predictions(["old-0"]),
    "has_feedback": lambda b: b.has_feedback(["old-0"]),
    "add_feedback": lambda b: b.add_feedback([_label("old-0")]),
}
BROKEN: dict[str, tuple[Callable[[Path], object], Callable[[Path], None]]] = {
    "is a directory": (Path.mkdir, Path.rmdir),
    "not a database": (lambda path: path.write_bytes(b"not a database " * 512), Path.unlink),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_sqlite_driver_errors_surface_as_log_backend_error_then_reconnect(
    tmp_path: Path, call: str, broken: str
) -> None:
    path = tmp_path / "log.db"
    spoil, repair = BROKEN[broken]
    spoil(path)
    backend = SqliteBackend(path, busy_timeout_s=0.2)
    with pytest.raises(LogBackendError, match=f"SQLite {path}") as raised:
        CALLS[call](backend)
    assert isinstance(raised.value.__cause__, sqlite3.Error)
    repair(path)
    CALLS[call](backend)
    backend.close()
