"""A model that raises: 422 when only this input is at fault, 500 when the model is broken."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from app.registry.store import Registry
from app.training.train import fitted_fields

NAME = "breakable"


class BreakableModel(LogisticRegression):  # type: ignore[misc]
    """Refuses rows with a negative first feature; fails on everything while ``broken``."""

    broken: ClassVar[bool] = False

    def _check(self, X: Any) -> None:
        if BreakableModel.broken:
            raise RuntimeError("the model's environment is gone")
        if (np.asarray(X)[:, 0] < 0).any():
            raise ValueError("negative sepal length")

    def predict(self, X: Any) -> Any:
        self._check(X)
        return super().predict(X)

    def predict_proba(self, X: Any) -> Any:
        self._check(X)
        return super().predict_proba(X)


def _errors(reason: str) -> float:
    labels = {"model": NAME, "reason": reason}
    return REGISTRY.get_sample_value("modelserve_prediction_errors_total", labels) or 0.0


def test_refusals_and_failures_are_told_apart(
    registry_path: Path, make_client: Callable[..., TestClient]
) -> None:
    data = load_iris()
    X, y = np.asarray(data.data, dtype=np.float64), data.target
    model = BreakableModel(max_iter=1000).fit(X, y)
    names = [str(n) for n in data.feature_names]
    registry = Registry(registry_path)
    meta = registry.register(NAME, model, fitted_fields(model, "classification", names, X, y, X[0]))
    registry.set_alias(NAME, "production", meta.version)
    client = make_client()
    url = f"/v1/models/{NAME}:predict"
    good = {"instances": [X[0].tolist()]}
    assert client.post(url, json=good).status_code == 200

    before = _errors("rejected_by_model")
    refused = client.post(url, json={"instances": [[-1.0, 3.0, 1.4, 0.2]]})
    assert refused.status_code == 422
    assert refused.json()["error"]["type"] == "rejected_by_model"
    assert "negative sepal length" in refused.json()["error"]["message"]
    assert _errors("rejected_by_model") == before + 1

    BreakableModel.broken = True
    try:
        before = _errors("model_error")
        failed = client.post(url, json=good)
        assert failed.status_code == 500 and failed.headers["content-type"] == "application/json"
        assert failed.json()["error"]["type"] == "model_error"
        assert "environment is gone" in failed.json()["error"]["message"]
        assert _errors("model_error") == before + 1
    finally:
        BreakableModel.broken = False
    again = client.post(url, json=good)
    assert again.status_code == 200
    assert again.json()["predictions"] == model.predict(X[:1]).tolist()
