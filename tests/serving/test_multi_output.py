"""Multi-output models: one list per row, with the model's own label types, on every route."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from fastapi.testclient import TestClient
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from app.registry.store import Registry

X = np.random.default_rng(0).normal(size=(200, 3))


def _register(registry: Registry, name: str, model: Any, task: str) -> None:
    meta = registry.register(
        name,
        model,
        {
            "python_version": "3.11",
            "sklearn_version": sklearn.__version__,
            "task": task,
            "features": [{"name": f"x{i}"} for i in range(3)],
            "data_fingerprint": "synthetic",
            "example": X[0].tolist(),
        },
    )
    registry.set_alias(name, "production", meta.version)


def test_multi_output_classifier_and_regressor(
    registry_path: Path, make_client: Callable[..., TestClient]
) -> None:
    labels = np.c_[(X[:, 0] > 0).astype(int), np.where(X[:, 1] > 0, "up", "down")]
    classifier = RandomForestClassifier(10, random_state=0).fit(X, labels)
    regressor = RandomForestRegressor(10, random_state=0).fit(X, np.c_[X[:, 0], 2 * X[:, 1]])
    registry = Registry(registry_path)
    _register(registry, "multi-label", classifier, "classification")
    _register(registry, "multi-value", regressor, "regression")
    client = make_client()
    rows = X[:5].tolist()

    answer = client.post("/v1/models/multi-label:predict", json={"instances": rows}).json()
    assert answer["predictions"] == classifier.predict(X[:5]).tolist()
    assert "probabilities" not in answer  # one table per output: not served
    answer = client.post("/v1/models/multi-value:predict", json={"instances": rows}).json()
    assert answer["predictions"] == regressor.predict(X[:5]).tolist()
    tensor = {"name": "x", "shape": [5, 3], "datatype": "FP64", "data": X[:5].ravel().tolist()}
    v2 = client.post("/v2/models/multi-value/infer", json={"inputs": [tensor]}).json()
    assert v2["outputs"][0]["shape"] == [5, 2]
    assert v2["outputs"][0]["data"] == regressor.predict(X[:5]).ravel().tolist()
    invoked = client.post("/models/multi-label/invocations", json={"instances": rows}).json()
    assert invoked == {"predictions": classifier.predict(X[:5]).tolist()}
