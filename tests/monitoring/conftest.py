"""The PostgreSQL server the prediction-log tests share (one per session), and the backends of
the contract tests: each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.monitoring.backend import open_backend
from app.monitoring.records import LogBackend
from tests.helpers.postgres import admin_url, fresh_database

BackendFactory = Callable[[], LogBackend]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    with admin_url() as url:
        if url is None:
            pytest.skip(
                "PostgreSQL is not installed (no initdb; Debian: apt-get install postgresql) "
                "and MODELSERVE_TEST_DATABASE_URL is unset"
            )
        yield url


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    with fresh_database(pg_server) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def make_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendFactory]:
    """New backends (separate connections, like separate workers) on one fresh store."""
    made: list[LogBackend] = []
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/log.db"
    else:
        url = request.getfixturevalue("pg_url")

    def make() -> LogBackend:
        made.append(open_backend(url, tmp_path / "unused.db"))
        return made[-1]

    yield make
    for backend in made:
        backend.close()
