"""Multi-output models: one list per row, with the model's own label types, on every route."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
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


CLASSES = np.c_[(X[:, 0] > 0).astype(int), np.where(X[:, 1] > 0, "up", "down")]
VALUES = np.c_[X[:, 0], 2 * X[:, 1]]


@pytest.fixture
def client(registry_path: Path, make_client: Callable[..., TestClient]) -> TestClient:
    registry = Registry(registry_path)
    _register(registry, "multi-label", _classifier(), "classification")
    _register(registry, "multi-value", _regressor(), "regression")
    return make_client()


def _classifier() -> RandomForestClassifier:
    return RandomForestClassifier(10, random_state=0).fit(X, CLASSES)


def _regressor() -> RandomForestRegressor:
    return RandomForestRegressor(10, random_state=0).fit(X, VALUES)


def test_multi_output_classifier_and_regressor(client: TestClient) -> None:
    classifier, regressor = _classifier(), _regressor()
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


def test_oip_metadata_declares_the_rows_of_values_infer_answers(client: TestClient) -> None:
    for name, datatype in (("multi-label", "BYTES"), ("multi-value", "FP64")):
        outputs = {o["name"]: o for o in client.get(f"/v2/models/{name}").json()["outputs"]}
        assert outputs["predict"] == {"name": "predict", "datatype": datatype, "shape": [-1, 2]}
        assert "predict_proba" not in outputs
        tensor = {"name": "x", "shape": [2, 3], "datatype": "FP64", "data": X[:2].ravel().tolist()}
        answer = client.post(f"/v2/models/{name}/infer", json={"inputs": [tensor]}).json()
        predict = next(o for o in answer["outputs"] if o["name"] == "predict")
        assert (predict["datatype"], predict["shape"]) == (datatype, [2, 2])


def test_feedback_on_a_row_of_values_is_a_clear_422(client: TestClient) -> None:
    for name in ("multi-label", "multi-value"):
        answer = client.post(f"/v1/models/{name}:predict", json={"instances": X[:1].tolist()})
        pid, predicted = answer.json()["prediction_ids"][0], answer.json()["predictions"][0]
        for label in (1, predicted):  # a scalar, or the row itself
            response = client.post("/feedback", json={"prediction_id": pid, "label": label})
            assert response.status_code == 422, response.text
            assert response.json()["error"]["field"] == "label"
        single = client.post("/feedback", json={"prediction_id": pid, "label": 1}).json()
        assert "predicts 2 values per row (multi-output)" in single["error"]["message"]
