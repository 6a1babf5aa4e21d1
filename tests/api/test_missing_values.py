"""One missing-value rule on every route: a NaN in a number input of a feature that may be
missing is that feature's missing value (tritonclient's JSON has no null, so NaN is its only
way to say it); for a feature that may not be missing it is the same named 422 everywhere."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.helpers.mixed import MIXED

ROW: dict[str, Any] = {
    "plan": "basic", "country": "de", "seats": 3, "monthly_fee": 41.5, "autopay": True,
    "tenure_months": None,
}  # fmt: skip
DATATYPES = {"plan": "BYTES", "country": "BYTES", "seats": "INT64", "monthly_fee": "FP64",
             "autopay": "BOOL", "tenure_months": "FP64"}  # fmt: skip


def _json(payload: Any) -> bytes:
    # The standard library writes float("nan") as the NaN token, as Python clients send it.
    return json.dumps(payload).encode()


def _v1(client: TestClient, row: dict[str, Any]) -> Any:
    return client.post(f"/v1/models/{MIXED}:predict", content=_json({"instances": [row]}))


def _v2(client: TestClient, row: dict[str, Any]) -> Any:
    inputs = [
        {"name": k, "shape": [1], "datatype": DATATYPES[k], "data": [v]} for k, v in row.items()
    ]
    return client.post(f"/v2/models/{MIXED}/infer", content=_json({"inputs": inputs}))


def _mlflow(client: TestClient, row: dict[str, Any]) -> Any:
    split = {"columns": list(row), "data": [list(row.values())]}
    return client.post(f"/models/{MIXED}/invocations", content=_json({"dataframe_split": split}))


def _prediction(route: str, response: Any) -> Any:
    assert response.status_code == 200, f"{route}: {response.text}"
    body = response.json()
    if route == "v2":
        return next(o for o in body["outputs"] if o["name"] == "predict")["data"][0]
    return body["predictions"][0]


ROUTES: dict[str, Callable[[TestClient, dict[str, Any]], Any]] = {
    "v1": _v1, "v2": _v2, "mlflow": _mlflow,
}  # fmt: skip


@pytest.mark.parametrize("route", list(ROUTES))
def test_nan_is_the_missing_value_of_a_feature_that_may_be_missing(
    churn: tuple[TestClient, Any], route: str
) -> None:
    client, model = churn
    frame = pd.DataFrame([{**ROW, "tenure_months": np.nan}]).astype(
        {"seats": "int64", "autopay": "bool", "tenure_months": "float64"}
    )
    expected = model.predict(frame).tolist()[0]
    as_null = _prediction(route, ROUTES[route](client, ROW))
    as_nan = _prediction(route, ROUTES[route](client, {**ROW, "tenure_months": math.nan}))
    assert as_nan == as_null == expected


@pytest.mark.parametrize("route", list(ROUTES))
def test_nan_for_a_feature_that_may_not_be_missing_is_the_same_named_422(
    churn: tuple[TestClient, Any], route: str
) -> None:
    client, _ = churn
    response = ROUTES[route](client, {**ROW, "monthly_fee": math.nan})
    assert response.status_code == 422, response.text
    body = orjson.loads(response.content)
    message = (
        body["error"]
        if route == "v2"
        else body["error"]["message"]
        if route == "v1"
        else (body["message"])
    )
    assert "feature 'monthly_fee' must not be missing" in message, message
    if route == "v1":
        assert body["error"]["field"] == "instances[0].monthly_fee"
