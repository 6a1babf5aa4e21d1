"""Fixtures the API tests share: the mixed-type churn model served beside the default one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.registry.store import Registry
from tests.helpers.mixed import MIXED, copy_registered, register_churn


@pytest.fixture(scope="module")
def churn_registered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The churn model registered once per module (``modelserve register``)."""
    workdir = tmp_path_factory.mktemp("churn")
    register_churn(workdir / "models", workdir)
    return workdir / "models"


@pytest.fixture
def churn(
    registry_path: Path, churn_registered: Path, make_client: Callable[..., TestClient]
) -> tuple[TestClient, Any]:
    """A client of the default registry with the churn model added, and that model in-process."""
    copy_registered(churn_registered, registry_path)
    return make_client(), Registry(registry_path).load(MIXED, "1").estimator
