"""A real server serves a random forest with its compiled scorer, says so in
``GET /models/{name}``, and answers exactly what the forest returns in-process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier

from app.registry.store import Registry
from app.training.train import fitted_fields
from tests.helpers.support import Server, copy_registry

pytestmark = [pytest.mark.e2e]

FOREST = "cancer-forest"


def test_a_served_forest_is_compiled_says_so_and_answers_exactly(
    tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    data = load_breast_cancer()
    X, y = np.asarray(data.data, dtype=np.float64), data.target
    forest = RandomForestClassifier(200, random_state=42).fit(X[::2], y[::2])
    registry = Registry(copy_registry(tmp_path / "models"))
    names = [str(n) for n in data.feature_names]
    fields = fitted_fields(forest, "classification", names, X[::2], y[::2], X[0])
    registry.register(FOREST, forest, fields)
    registry.set_alias(FOREST, "production", "1")

    server = server_factory(registry.root, env={"MODELSERVE_POLL_INTERVAL_S": "0"})
    server.wait_ready()
    detail = httpx.get(f"{server.url}/models/{FOREST}", timeout=10).json()
    assert detail["served_version"] == "1"
    assert detail["scorer"] == "compiled-trees"
    assert httpx.get(f"{server.url}/models/breast-cancer", timeout=10).json()["scorer"] == (
        "one-pass-linear"
    )

    rows = X[1::2][:100]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for batch in (1, 50):
            predictions, probabilities = [], []
            for start in range(0, len(rows), batch):
                body = {"instances": rows[start : start + batch].tolist()}
                answer = client.post(f"/v1/models/{FOREST}:predict", json=body)
                assert answer.status_code == 200, answer.text
                predictions += answer.json()["predictions"]
                probabilities += answer.json()["probabilities"]
            assert predictions == forest.predict(rows).tolist()
            assert probabilities == forest.predict_proba(rows).tolist()
    assert "compiled trees not used" not in server.logs()
