"""The prediction log's tables, written once for every backend, and their numbered migrations.

``MIGRATIONS[n - 1]`` brings a log from version ``n - 1`` to ``n``; ``{float}`` is the dialect's
double type. The version a log is at lives in ``schema_version`` (one row). Logs written before
versions were recorded have the tables of version 1 and no ``schema_version``: they are taken
as version 1 and migrated forward. A log recorded at a newer version than this code knows is
refused, never downgraded: its rows may mean something this code does not understand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.monitoring.records import LogBackendError

# Runs one statement in the caller's transaction; returns its rows (none for DDL).
Run = Callable[[str], Sequence[Sequence[object]]]


@dataclass(frozen=True)
class Dialect:
    name: str
    float_type: str
    list_tables: str  # the names of the tables where the backend creates its own


SQLITE = Dialect("SQLite", "REAL", "SELECT name FROM sqlite_master WHERE type = 'table'")
POSTGRES = Dialect(
    "PostgreSQL",
    "DOUBLE PRECISION",
    # current_schema() is where CREATE TABLE puts them, whatever else the search_path holds.
    "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: the layout of the logs written before versions were recorded, column for column
        """CREATE TABLE IF NOT EXISTS predictions (
    id TEXT PRIMARY KEY,
    time {float} NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    inputs TEXT NOT NULL,
    output TEXT NOT NULL
)""",
        "CREATE INDEX IF NOT EXISTS predictions_time ON predictions (time)",
        """CREATE TABLE IF NOT EXISTS feedback (
    prediction_id TEXT PRIMARY KEY,
    time {float} NOT NULL,
    label TEXT NOT NULL,
    outcome TEXT,
    error {float}
)""",
        "CREATE INDEX IF NOT EXISTS feedback_time ON feedback (time)",
    ),
    (  # 2: exporting one model's rows in time order
        "CREATE INDEX IF NOT EXISTS predictions_model_time ON predictions (model, time)",
    ),
    (  # 3: a shadow version's outputs for the rows production answered (same inputs)
        """CREATE TABLE IF NOT EXISTS shadow_predictions (
    prediction_id TEXT NOT NULL,
    time {float} NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    output TEXT NOT NULL,
    PRIMARY KEY (prediction_id, version)
)""",
        "CREATE INDEX IF NOT EXISTS shadow_predictions_time ON shadow_predictions (time)",
    ),
)
LATEST_VERSION = len(MIGRATIONS)

VERSION_TABLE = "schema_version"
UNVERSIONED_TABLES = frozenset({"predictions", "feedback"})


class SchemaVersionError(LogBackendError):
    """The log was migrated by a newer modelserve; this one would misread or damage it."""

    def __init__(self, found: int) -> None:
        super().__init__(
            f"the prediction log is at schema version {found}, newer than the latest this "
            f"modelserve knows ({LATEST_VERSION}): upgrade modelserve, or point it at another "
            "log; it is never downgraded"
        )
        self.found = found


def statements_for(dialect: Dialect, from_version: int) -> list[str]:
    """What brings a log at ``from_version`` (0: empty) to ``LATEST_VERSION``, version included."""
    if from_version > LATEST_VERSION:
        raise SchemaVersionError(from_version)
    if from_version == LATEST_VERSION:
        return []
    steps = [s.format(float=dialect.float_type) for m in MIGRATIONS[from_version:] for s in m]
    return [
        *steps,
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL)",
        f"DELETE FROM {VERSION_TABLE}",  # noqa: S608
        f"INSERT INTO {VERSION_TABLE} (version) VALUES ({LATEST_VERSION})",  # noqa: S608
    ]


def current_version(run: Run, dialect: Dialect) -> int:
    """The recorded version; 1 for a log from before versions were recorded, 0 for none."""
    tables = {str(row[0]) for row in run(dialect.list_tables)}
    if VERSION_TABLE in tables:
        rows = run(f"SELECT max(version) FROM {VERSION_TABLE}")  # noqa: S608
        recorded = rows[0][0] if rows else None
        if isinstance(recorded, int):
            return recorded
    return 1 if tables >= UNVERSIONED_TABLES else 0


def migrate(run: Run, dialect: Dialect) -> int:
    """Bring the log to ``LATEST_VERSION``; returns the version found.

    Must run in one transaction that excludes other migrators (SQLite: ``BEGIN IMMEDIATE``,
    PostgreSQL: an advisory lock), so the loser of a race finds the winner's version and
    does nothing.
    """
    found = current_version(run, dialect)
    for statement in statements_for(dialect, found):
        run(statement)
    return found
