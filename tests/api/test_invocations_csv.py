"""``text/csv`` bodies on /invocations, as ``mlflow models serve`` takes them: a header row of
feature names, then rows, each cell typed by its feature's kind. The answer is bit for bit the
model's ``predict`` on the frame pandas reads from the same text; bad CSV is MLflow's error
body naming where."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.registry.store import Registry
from tests.helpers.mixed import MIXED, TARGET, churn_frame

DEFAULT = "breast-cancer"
CSV = {"content-type": "text/csv"}


def _post_csv(client: TestClient, path: str, text: str, content_type: str = "text/csv") -> Any:
    return client.post(path, content=text.encode(), headers={"content-type": content_type})


@pytest.mark.parametrize("rows", [1, 50])
def test_typed_csv_answers_what_the_model_gives_the_frame_pandas_reads(
    churn: tuple[TestClient, Any], rows: int
) -> None:
    client, model = churn
    frame = churn_frame(rows, seed=3).drop(columns=TARGET)
    text = frame.to_csv(index=False)  # missing tenure as an empty cell, booleans True/False
    assert rows == 1 or frame["tenure_months"].isna().any()  # some rows send a missing value
    response = _post_csv(client, f"/models/{MIXED}/invocations", text, "text/csv; charset=utf-8")
    assert response.status_code == 200, response.text
    expected = model.predict(pd.read_csv(io.StringIO(text))).tolist()
    assert response.json() == {"predictions": expected}
    assert response.headers["x-model-version"] == "1"


def test_numeric_csv_on_the_default_route(client: TestClient, registry: Registry) -> None:
    artifact = registry.load(DEFAULT, "1")
    example = np.asarray(artifact.metadata.example, dtype=np.float64)
    X = np.stack([example * (1 + i / 100) for i in range(50)])
    text = pd.DataFrame(X, columns=artifact.metadata.feature_names).to_csv(index=False)
    response = _post_csv(client, "/invocations", text)
    assert response.status_code == 200, response.text
    assert (
        response.json()["predictions"]
        == artifact.estimator.predict(pd.read_csv(io.StringIO(text)).to_numpy()).tolist()
    )


@pytest.mark.parametrize(
    ("text", "status", "says"),
    [
        ("", 422, "csv: needs a header row"),
        ("plan,plan\nbasic,pro\n", 422, "csv: header names 'plan' twice"),
        ("plan,country\n", 422, "csv: must hold at least one row after its header"),
        ("a,b\n1,2\n3\n", 422, "csv[1]: has 1 values for a header of 2"),
        # over the csv module's own field limit (128 KiB): read, and refused naming its feature
        (
            "plan,country,seats,monthly_fee,autopay,tenure_months\n"
            + "x" * 200_000
            + ",de,3,20.0,true,5\n",
            422,
            "csv[0].plan: feature 'plan' takes strings of at most 4096 characters",
        ),
    ],
)
def test_bad_csv_is_mlflows_error_naming_where(
    churn: tuple[TestClient, Any], text: str, status: int, says: str
) -> None:
    client, _ = churn
    response = _post_csv(client, f"/models/{MIXED}/invocations", text)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error_code", "message"}
    assert body["message"].startswith(says), body["message"]


def test_a_cell_of_the_wrong_kind_names_its_row_and_feature(
    churn: tuple[TestClient, Any],
) -> None:
    client, _ = churn
    frame = churn_frame(2, seed=1).drop(columns=TARGET).astype({"seats": object})
    frame.loc[1, "seats"] = "many"
    response = _post_csv(client, f"/models/{MIXED}/invocations", frame.to_csv(index=False))
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("csv[1].seats: feature 'seats' must be an integer")


def test_a_body_that_is_not_utf8_is_refused(client: TestClient) -> None:
    response = client.post("/invocations", content=b"\xff\xfe\x00a", headers=CSV)
    assert response.status_code == 422
    assert "UTF-8" in response.json()["message"]
