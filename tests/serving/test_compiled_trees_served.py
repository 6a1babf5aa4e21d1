"""A served version says which scorer answers it (``GET /models/{name}``), and a compiled tree
ensemble that differs from scikit-learn in one leaf is refused at load: scikit-learn serves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier

from app.registry.store import Registry
from app.serving import treescore
from app.training.train import fitted_fields
from tests.helpers.trees import one_leaf_off

FOREST = "wine-forest"


def _register_forest(registry: Registry) -> tuple[Any, np.ndarray[Any, Any]]:
    data = load_wine()
    X, y = np.asarray(data.data, dtype=np.float64), data.target
    forest = RandomForestClassifier(25, random_state=0).fit(X[::2], y[::2])
    names = [str(n) for n in data.feature_names]
    fields = fitted_fields(forest, "classification", names, X[::2], y[::2], X[0])
    meta = registry.register(FOREST, forest, fields)
    registry.set_alias(FOREST, "production", meta.version)
    return forest, X[1::2]


def _answers(client: TestClient, rows: np.ndarray[Any, Any], batch: int) -> tuple[list[Any], ...]:
    predictions: list[Any] = []
    probabilities: list[Any] = []
    for start in range(0, len(rows), batch):
        instances = rows[start : start + batch].tolist()
        response = client.post(f"/v1/models/{FOREST}:predict", json={"instances": instances})
        assert response.status_code == 200, response.text
        predictions += response.json()["predictions"]
        probabilities += response.json()["probabilities"]
    return predictions, probabilities


def test_models_say_which_scorer_serves_them(
    registry: Registry, make_client: Callable[..., TestClient]
) -> None:
    forest, rows = _register_forest(registry)
    client = make_client()
    assert client.get(f"/models/{FOREST}").json()["scorer"] == "compiled-trees"
    assert client.get("/models/breast-cancer").json()["scorer"] == "one-pass-linear"
    listed = {m["name"]: m["scorer"] for m in client.get("/models").json()["models"]}
    assert listed[FOREST] == "compiled-trees"
    for batch in (1, 50):
        predictions, probabilities = _answers(client, rows, batch)
        assert predictions == forest.predict(rows).tolist()
        assert probabilities == forest.predict_proba(rows).tolist()


def test_a_compiled_forest_one_leaf_off_is_refused_at_load_and_scikit_learn_serves(
    registry: Registry,
    make_client: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    forest, rows = _register_forest(registry)
    real = treescore.compile_ensemble
    monkeypatch.setattr(treescore, "compile_ensemble", lambda *a: one_leaf_off(real(*a)))
    client = make_client()
    assert client.get(f"/models/{FOREST}").json()["scorer"] == "scikit-learn"
    log = capfd.readouterr().err.splitlines()
    refusals = [line for line in log if "compiled trees not used" in line]
    assert len(refusals) == 1, refusals  # one warning line, naming the version and why
    assert " WARNING " in refusals[0] and f"{FOREST} version 1:" in refusals[0]
    assert "answers differently from scikit-learn's" in refusals[0]
    for batch in (1, 50):
        predictions, probabilities = _answers(client, rows, batch)
        assert predictions == forest.predict(rows).tolist()
        assert probabilities == forest.predict_proba(rows).tolist()
