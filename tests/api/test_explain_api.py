"""POST /v1/models/{name}:explain and /v2/models/{name}/explain in-process: the answer's shape
and sums, the same refusals as :predict for the same bodies, and clear 4xx for a version that
cannot be explained while :predict keeps serving it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_wine
from sklearn.neighbors import KNeighborsClassifier

from app.registry.store import Registry
from tests.api.test_bad_input import CASES, MAX_BATCH
from tests.api.test_bad_input import Case as BadCase
from tests.helpers.explained import register_fitted

MODEL = "breast-cancer"
EXPLAIN = f"/v1/models/{MODEL}:explain"


def _sums(explanation: dict[str, Any]) -> float:
    """The largest gap between base + contributions and the model's output, over outputs."""
    total = np.asarray(explanation["base_value"]) + np.sum(
        list(explanation["contributions"].values()), axis=0
    )
    return float(np.abs(total - np.asarray(explanation["output_value"])).max())


def test_an_answer_per_row_adds_up_to_the_models_own_output(
    client: TestClient, registry: Registry
) -> None:
    artifact = registry.load(MODEL, "1")
    meta, estimator = artifact.metadata, artifact.estimator
    X = np.asarray([meta.reference.features[n].mean for n in meta.feature_names])[None, :]
    rows = np.vstack([np.asarray(meta.example, dtype=np.float64), X[0] * 0.9, X[0] * 1.2])
    answer = client.post(EXPLAIN, json={"instances": rows.tolist()})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model"], body["version"], body["method"]) == (MODEL, "1", "linear")
    assert (body["output"], body["outputs"], body["features"]) == (
        "margin",
        [1],
        meta.feature_names,
    )
    explanations = body["explanations"]
    assert len(explanations) == 3
    margins = estimator.decision_function(rows)
    for i, row in enumerate(explanations):
        assert list(row["contributions"]) == meta.feature_names
        assert row["prediction"] == estimator.predict(rows[i : i + 1]).tolist()[0]
        assert row["output_value"] == pytest.approx([margins[i]], abs=1e-12)
        assert _sums(row) <= 1e-6
    # The training means: no contribution at all, and the base value is the margin there.
    at_mean = client.post(EXPLAIN, json={"instances": X.tolist()}).json()["explanations"][0]
    assert max(abs(v[0]) for v in at_mean["contributions"].values()) < 1e-9
    assert at_mean["base_value"] == pytest.approx(at_mean["output_value"], abs=1e-9)


def _explain_path(case: BadCase) -> str:
    return EXPLAIN if case.path == "/predict" else case.path.replace(":predict", ":explain")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_body_gets_the_same_refusal_as_predict(
    case: BadCase, make_client: Callable[..., TestClient], registry: Registry
) -> None:
    client = make_client(max_batch=MAX_BATCH)
    meta = registry.metadata(MODEL, "1")
    headers = {"Content-Type": "application/json"}
    names, row = meta.feature_names, meta.example
    predicted = client.post(case.path, content=case.body(names, row), headers=headers)
    explained = client.post(_explain_path(case), content=case.body(names, row), headers=headers)
    assert (explained.status_code, explained.json()) == (predicted.status_code, predicted.json())


def test_more_rows_than_the_explain_limit_is_413(
    make_client: Callable[..., TestClient], registry: Registry
) -> None:
    client = make_client(explain_max_batch=2)
    row = registry.metadata(MODEL, "1").example
    answer = client.post(EXPLAIN, json={"instances": [row] * 3})
    assert answer.status_code == 413
    assert answer.json()["error"]["type"] == "batch_too_large"
    assert "over the limit of 2 per request" in answer.json()["error"]["message"]
    assert client.post("/predict", json={"instances": [row] * 3}).status_code == 200


def test_the_v2_route_answers_the_same_as_tensors(client: TestClient, registry: Registry) -> None:
    meta = registry.metadata(MODEL, "1")
    example = [float(v) for v in meta.example if isinstance(v, float | int)]
    rows = [example, [v * 1.1 for v in example]]
    flat = [v for row in rows for v in row]
    inputs = [{"name": "input-0", "shape": [2, 30], "datatype": "FP64", "data": flat}]
    v1 = client.post(EXPLAIN, json={"instances": rows}).json()
    for path in (f"/v2/models/{MODEL}/explain", f"/v2/models/{MODEL}/versions/1/explain"):
        answer = client.post(path, json={"id": "r-1", "inputs": inputs})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["model_name"], body["model_version"], body["id"]) == (MODEL, "1", "r-1")
        assert body["parameters"]["output"] == "margin"
        assert body["parameters"]["features"] == meta.feature_names
        tensors = {t["name"]: t for t in body["outputs"]}
        assert tensors["predict"]["shape"] == [2]
        assert tensors["output_value"]["shape"] == tensors["base_value"]["shape"] == [2, 1]
        assert tensors["contributions"]["shape"] == [2, 30, 1]
        expected = [v for row in v1["explanations"] for v in row["contributions"].values()]
        assert tensors["contributions"]["data"] == [v[0] for v in expected]
    bad = client.post(f"/v2/models/{MODEL}/explain", json={"inputs": []})
    assert bad.status_code == 400 and bad.json() == {
        "error": "inputs: must be a non-empty list of tensors"
    }
    assert client.post("/v2/models/nope/explain", json={"inputs": inputs}).status_code == 404


def test_a_model_without_an_exact_explainer_is_a_clear_422_and_still_predicts(
    registry_path: Path, tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    X, y = load_wine(return_X_y=True)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])]).assign(y=y)
    knn = KNeighborsClassifier(5).fit(X, y)
    register_fitted(Registry(registry_path), tmp_path, "wine-knn", knn, frame, "classification")
    client = make_client()
    for _ in range(2):
        answer = client.post("/v1/models/wine-knn:explain", json={"instances": [X[0].tolist()]})
        assert answer.status_code == 422
        error = answer.json()["error"]
        assert error["type"] == "not_explainable"
        assert error["message"].startswith(
            "model 'wine-knn' version 1 cannot be explained: KNeighborsClassifier has no exact "
            "explainer; :explain covers linear models"
        )
    predicted = client.post("/v1/models/wine-knn:predict", json={"instances": [X[0].tolist()]})
    assert predicted.status_code == 200
    assert predicted.json()["predictions"] == knn.predict(X[:1]).tolist()
    example = Registry(registry_path).metadata(MODEL, "1").example
    assert client.post("/predict", json={"instances": [example]}).status_code == 200
