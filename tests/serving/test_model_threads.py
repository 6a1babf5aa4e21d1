"""MODELSERVE_MODEL_THREADS: the OpenMP threads a served model's call may use."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient
from sklearn.base import BaseEstimator, RegressorMixin
from threadpoolctl import threadpool_info, threadpool_limits

from app.config import Settings
from app.registry.store import Registry
from app.training.train import fitted_fields
from tests.helpers.app_factory import build_app
from tests.helpers.toy_models import iris

NAME = "threads-seen"


def _openmp_threads() -> int:
    """What an OpenMP model called from this thread would run on (the thread's own setting)."""
    return max(
        int(info["num_threads"]) for info in threadpool_info() if info["user_api"] == "openmp"
    )


class ThreadsSeen(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """Predicts, for every row, the OpenMP threads its call may use."""

    def fit(self, X: npt.NDArray[np.float64], y: npt.NDArray[Any]) -> ThreadsSeen:
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.full(len(X), float(_openmp_threads()))


def _served_threads(root: Path, **settings: Any) -> float:
    client = TestClient(
        build_app(Settings(registry=root, default_model=NAME, poll_interval_s=0, **settings))
    )
    with client:
        deadline = time.monotonic() + 30
        while client.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        X = iris()[0][:3].tolist()
        body = client.post("/predict", json={"instances": X}).json()
    predictions = set(body["predictions"])
    assert len(predictions) == 1, body
    return float(predictions.pop())


@pytest.fixture(scope="module")
def registry_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("threads") / "models"
    X, y, names = iris()
    model = ThreadsSeen().fit(X, y.astype(float))
    registry = Registry(root)
    meta = registry.register(NAME, model, fitted_fields(model, "regression", names, X, y, X[0]))
    registry.set_alias(NAME, "production", meta.version)
    return root


def test_a_model_call_uses_one_thread_by_default(registry_root: Path) -> None:
    assert Settings().model_threads == 1
    assert _served_threads(registry_root) == 1.0


@pytest.fixture
def fresh_default() -> int:
    """OpenMP's default in a fresh process, given back to this thread: a test before this one
    may have loaded a model in it, and loading limits the loading thread like the inference one."""
    code = "from tests.serving.test_model_threads import _openmp_threads; print(_openmp_threads())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    default = int(out.stdout)
    threadpool_limits(limits=default, user_api="openmp")
    return default


def test_the_setting_gives_the_count_and_zero_the_librarys_default(
    registry_root: Path, fresh_default: int
) -> None:
    cores = os.cpu_count() or 1
    if cores < 2:
        pytest.skip("one core: every setting means one thread")
    assert _served_threads(registry_root, model_threads=2) == 2.0
    # 0 leaves OpenMP its own default (every core), what the model does in a fresh process.
    assert _served_threads(registry_root, model_threads=0) == float(fresh_default)
    # The limit is the inference thread's: the process's other threads keep theirs.
    assert _openmp_threads() == cores or "OMP_NUM_THREADS" in os.environ
