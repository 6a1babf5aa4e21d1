"""Where the prediction log goes is never silent (issue #15).

With only ``MODELSERVE_REGISTRY=/some/ms-models`` set, the log goes to
``/some/data/predictions.db`` beside the registry, as documented; the server's start-up log
names that file and how to choose another, and never prints a database password.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from tests.helpers.support import Server, copy_registry

pytestmark = pytest.mark.e2e


def test_the_default_log_file_is_named_at_start_up(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    registry = copy_registry(tmp_path / "scratch" / "ms-models")
    server = server_factory(registry)
    server.wait_ready()
    body = {"instances": [[0.0] * 30]}
    assert httpx.post(f"{server.url}/predict", json=body, timeout=30).status_code == 200
    expected = tmp_path / "scratch" / "data" / "predictions.db"
    logs = server.logs()
    assert f"prediction log: {expected}" in logs, logs
    assert "MODELSERVE_PREDICTION_LOG" in logs  # how to put it elsewhere
    assert expected.exists()


def test_a_chosen_log_is_named_and_a_password_never_printed(tmp_path: Path) -> None:
    chosen = Settings(registry=tmp_path, prediction_log=tmp_path / "log.db")
    assert chosen.prediction_log_where == f"{tmp_path / 'log.db'} (MODELSERVE_PREDICTION_LOG)"
    url = "postgresql://ms:s3cret@db.internal:5432/modelserve?sslmode=require"
    shared = Settings(registry=tmp_path, database_url=url)
    assert "s3cret" not in shared.prediction_log_where
    assert "postgresql://ms:***@db.internal:5432/modelserve" in shared.prediction_log_where
