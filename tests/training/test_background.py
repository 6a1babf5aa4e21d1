"""Each version stores a background sample: the training rows :explain measures from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer

from app.registry.store import Registry
from app.training.register import Request, run
from tests.helpers.lifecycle import NAME, train_quick
from tests.helpers.mixed import TARGET, churn_frame, fit_churn


def _seeded(n: int, size: int = 100) -> list[int]:
    """The documented rule: ``size`` of ``n`` row indices drawn by seed 0, in training order."""
    return sorted(np.random.default_rng(0).choice(n, size=size, replace=False).tolist())


def _register_churn(tmp_path: Path, registry: Registry, frame: pd.DataFrame) -> None:
    artifact, sample = tmp_path / "churn.joblib", tmp_path / "churn.csv"
    joblib.dump(fit_churn(frame), artifact)
    frame.to_csv(sample, index=False)
    outcome = run(Request("churn", artifact, sample, TARGET), registry)
    assert outcome.status == "registered", outcome.report


def test_train_stores_100_of_its_training_rows_the_same_every_run(tmp_path: Path) -> None:
    for where in ("a", "b"):
        assert train_quick(tmp_path / where).status == "registered"
    first = Registry(tmp_path / "a").metadata(NAME, "1").background
    assert first == Registry(tmp_path / "b").metadata(NAME, "1").background
    assert len(first) == 100 and len({tuple(row) for row in first}) == 100
    data = {tuple(row) for row in load_breast_cancer().data.tolist()}
    assert all(tuple(row) in data for row in first), "a background row is no training row"


def test_register_stores_the_sample_rows_as_a_request_sends_them(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    frame = churn_frame(300)
    _register_churn(tmp_path, registry, frame)
    meta = registry.metadata("churn", "1")
    features = frame.drop(columns=TARGET).astype(object)
    expected = [
        [None if pd.isna(v) else v for v in features.iloc[i].tolist()] for i in _seeded(300)
    ]
    assert meta.background == expected
    assert any(row[-1] is None for row in meta.background)  # tenure_months: missing as null
    assert all(isinstance(row[0], str) and isinstance(row[4], bool) for row in meta.background)


def test_a_small_sample_is_stored_whole_and_the_model_listing_leaves_it_out(
    tmp_path: Path, registry_path: Path, make_client: Callable[..., TestClient]
) -> None:
    registry = Registry(registry_path)
    _register_churn(tmp_path, registry, churn_frame(60))
    assert len(registry.metadata("churn", "1").background) == 60
    listed = make_client().get("/models/churn").json()["metadata"]
    assert listed and all("background" not in version for version in listed)
    # The committed default model predates backgrounds: its metadata still loads.
    assert registry.metadata(NAME, "1").background == []
