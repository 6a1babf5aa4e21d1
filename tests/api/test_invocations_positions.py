"""``dataframe_split`` with the columns ``0, 1, ...`` of a DataFrame built from an array (what
MLflow's ``ScoringServerClient.invoke(pd.DataFrame(X))`` sends) is rows by position: the
model's own answer. Other non-name columns stay MLflow's error body naming them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.registry.store import Registry

DEFAULT = "breast-cancer"


def _rows(registry: Registry, n: int) -> tuple[Any, np.ndarray[Any, Any]]:
    artifact = registry.load(DEFAULT, "1")
    example = np.asarray(artifact.metadata.example, dtype=np.float64)
    return artifact.estimator, np.stack([example * (1 + i / 100) for i in range(n)])


@pytest.mark.parametrize("rows", [1, 50])
def test_a_frame_of_an_array_is_rows_by_position(
    client: TestClient, registry: Registry, rows: int
) -> None:
    model, X = _rows(registry, rows)
    split = pd.DataFrame(X).to_dict(orient="split")
    assert split["columns"] == list(range(X.shape[1]))
    response = client.post("/invocations", json={"dataframe_split": split})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": model.predict(X).tolist()}


@pytest.mark.parametrize(
    ("columns", "says"),
    [
        ([1, 0, *range(2, 30)], "dataframe_split.columns: must be a list of column names"),
        ([True, *range(1, 30)], "dataframe_split.columns: must be a list of column names"),
        (list(range(29)), "dataframe_split.data[0]: expected 30 features, got 29"),
    ],
)
def test_other_columns_that_are_not_names_are_refused(
    client: TestClient, registry: Registry, columns: list[Any], says: str
) -> None:
    _, X = _rows(registry, 1)
    body = {"dataframe_split": {"columns": columns, "data": X[:, : len(columns)].tolist()}}
    response = client.post("/invocations", json=body)
    assert response.status_code == 422, response.text
    assert response.json() == {"error_code": "INVALID_PARAMETER_VALUE", "message": says}
