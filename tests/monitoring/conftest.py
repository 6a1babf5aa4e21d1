"""The PostgreSQL server the prediction-log tests share (one per session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.postgres import admin_url


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    with admin_url() as url:
        if url is None:
            pytest.skip(
                "PostgreSQL is not installed (no initdb; Debian: apt-get install postgresql) "
                "and MODELSERVE_TEST_DATABASE_URL is unset"
            )
        yield url
