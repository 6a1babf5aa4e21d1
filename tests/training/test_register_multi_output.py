"""Registering a model that predicts several values per row (multi-output)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Ridge
from sklearn.multioutput import MultiOutputClassifier, MultiOutputRegressor

from app.registry.store import Registry
from app.training.register import RegisterError, Request, run


def multi_output_data(n: int = 120) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Four named features, two class columns and two value columns."""
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    classes = np.c_[(X.a > 0).astype(int), (X.b > X.c).astype(int) + (X.d > 1)]
    values = np.c_[X.a * 2 + X.b, X.c - X.d]
    return X, classes, values


def multi_output_models() -> dict[str, Any]:
    X, classes, values = multi_output_data()
    return {
        "labels": MultiOutputClassifier(RandomForestClassifier(10, random_state=0)).fit(X, classes),
        "values": MultiOutputRegressor(Ridge()).fit(X, values),
    }


def _files(tmp_path: Path, model: Any, with_label: bool) -> tuple[Path, Path]:
    artifact = tmp_path / "model.joblib"
    joblib.dump(model, artifact)
    sample = multi_output_data()[0]
    if with_label:
        sample["y"] = 1
    path = tmp_path / "sample.csv"
    sample.to_csv(path, index=False)
    return artifact, path


@pytest.mark.parametrize("kind", ["labels", "values"])
def test_a_multi_output_model_registers_without_a_label_column(tmp_path: Path, kind: str) -> None:
    model = multi_output_models()[kind]
    artifact, sample = _files(tmp_path, model, with_label=False)
    registry = Registry(tmp_path / "models")
    outcome = run(Request(kind, artifact, sample, promote=True), registry)
    assert outcome.status == "registered"
    meta = registry.metadata(kind, "1")
    expected_task = "classification" if kind == "labels" else "regression"
    assert meta.task == expected_task and meta.classes is None and meta.metrics == {}
    X = multi_output_data()[0]
    loaded = registry.load(kind, "1").estimator
    assert np.array_equal(loaded.predict(X), model.predict(X))


@pytest.mark.parametrize("kind", ["labels", "values"])
def test_a_label_column_for_a_multi_output_model_is_refused_by_name(
    tmp_path: Path, kind: str
) -> None:
    artifact, sample = _files(tmp_path, multi_output_models()[kind], with_label=True)
    registry = Registry(tmp_path / "models")
    with pytest.raises(RegisterError, match="--target 'y': the model predicts 2 values per row"):
        run(Request(kind, artifact, sample, "y"), registry)
    assert not (tmp_path / "models" / kind).exists()
