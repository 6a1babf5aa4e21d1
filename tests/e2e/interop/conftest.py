"""One real server per client module: the default model and the churn pipeline, HTTP and gRPC."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.interop import Served, serve


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("interop")) as server:
        yield server
