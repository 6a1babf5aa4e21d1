"""``modelserve train`` and ``register`` store what drives each new version: every feature's
share of the mean absolute contribution on its background rows, computed here independently
(shap's own TreeSHAP values, ``coef * (T(x) - mean)`` for a linear model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import KNeighborsClassifier

from app.cli.common import open_registry
from app.registry.metadata import ModelMetadata
from app.registry.store import Registry
from app.training.register import Request, run
from app.training.spec import load_spec
from app.training.train import run as train
from tests.helpers.explained import (
    Matrix,
    linear_contributions,
    model_rows,
    shap_contributions,
)
from tests.helpers.lifecycle import DEFAULT_SPEC, NAME
from tests.helpers.mixed import TARGET, churn_frame, fit_churn


def _register(registry: Registry, work: Path, name: str, model: Any, frame: pd.DataFrame) -> str:
    artifact, sample = work / f"{name}.joblib", work / f"{name}.csv"
    joblib.dump(model, artifact)
    frame.to_csv(sample, index=False)
    request = Request(name, artifact, sample, TARGET, gates=("accuracy>=0",))
    outcome = run(request, registry)
    assert outcome.status == "registered", outcome.report
    assert outcome.version is not None
    return outcome.version


def _shares(meta: ModelMetadata, contributions: Matrix) -> dict[str, float]:
    per_feature = np.abs(contributions).sum(axis=(0, 2))
    return dict(zip(meta.feature_names, (per_feature / per_feature.sum()).tolist(), strict=True))


def test_register_stores_each_features_share_of_the_tree_shap_values(tmp_path: Path) -> None:
    registry = open_registry(tmp_path / "models")  # the CLI's registry, as `modelserve register`
    frame = churn_frame()
    model = fit_churn(frame)
    meta = registry.metadata("churn", _register(registry, tmp_path, "churn", model, frame))

    rows = model_rows(meta, [list(r) for r in meta.background])
    _, values = shap_contributions(model, rows, len(meta.features))
    expected = _shares(meta, values)
    assert meta.attribution_reference.keys() == expected.keys()
    for feature, share in expected.items():
        assert meta.attribution_reference[feature] == pytest.approx(share, rel=1e-9, abs=1e-12)
    assert sum(meta.attribution_reference.values()) == pytest.approx(1.0)
    # the model splits on plan and monthly_fee only (churned: basic plan above a fee of 30)
    top = sorted(expected, key=expected.__getitem__, reverse=True)[:2]
    assert set(top) == {"plan", "monthly_fee"}


def test_train_stores_the_shares_of_a_linear_models_contributions(tmp_path: Path) -> None:
    registry = open_registry(tmp_path / "models")  # as `modelserve train`
    outcome = train(load_spec(DEFAULT_SPEC, {"split.cv_folds": 0}), registry)
    assert outcome.version is not None
    meta = registry.metadata(NAME, outcome.version)
    model = registry.load(NAME, outcome.version).estimator

    background = np.asarray(meta.background, dtype=np.float64)
    expected = _shares(meta, linear_contributions(model, background, background, 30))
    stored = meta.attribution_reference
    assert list(stored) == meta.feature_names
    assert np.allclose([stored[f] for f in expected], list(expected.values()), rtol=1e-9)


def test_a_version_without_an_exact_explainer_registers_without_a_reference(
    tmp_path: Path,
) -> None:
    registry = open_registry(tmp_path / "models")
    frame = churn_frame(200).drop(columns=["plan", "country", "autopay", "tenure_months"])
    model = KNeighborsClassifier().fit(frame.drop(columns=TARGET), frame[TARGET])
    meta = registry.metadata("knn", _register(registry, tmp_path, "knn", model, frame))
    assert meta.background and meta.attribution_reference == {}


def test_a_registry_without_the_hook_and_older_metadata_store_none(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")  # bench and tests register through this one
    frame = churn_frame(200)
    meta = registry.metadata(
        "churn", _register(registry, tmp_path, "churn", fit_churn(frame), frame)
    )
    assert meta.attribution_reference == {}
    old = meta.model_dump(mode="json", exclude={"attribution_reference"})
    assert ModelMetadata.model_validate(old).attribution_reference == {}
