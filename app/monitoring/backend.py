"""Choosing the prediction-log backend from ``MODELSERVE_DATABASE_URL``.

``sqlite:///path`` or unset: ``app/monitoring/sqlite.py`` (one host, every worker);
``postgresql://...``: ``app/monitoring/postgres.py`` (one log for every replica). The records and
the interface they share are in ``app/monitoring/records.py``.
"""

from __future__ import annotations

from pathlib import Path

from app.monitoring.records import LogBackend
from app.monitoring.sqlite import SqliteBackend


def open_backend(database_url: str | None, default_path: Path) -> LogBackend:
    """The backend for ``MODELSERVE_DATABASE_URL`` (SQLite at ``default_path`` when unset)."""
    if not database_url:
        return SqliteBackend(default_path)
    if database_url.startswith("sqlite:///"):
        return SqliteBackend(Path(database_url.removeprefix("sqlite:///")).expanduser())
    from app.monitoring.postgres import PostgresBackend, is_postgres_url  # imports the driver

    if is_postgres_url(database_url):
        return PostgresBackend(database_url)
    scheme = database_url.split(":", 1)[0]
    raise ValueError(
        f"MODELSERVE_DATABASE_URL scheme {scheme!r} is not supported "
        "(supported: sqlite:///path, postgresql://...); "
        "see docs/guide/monitoring.md, 'Prediction log'"
    )
