"""POST /feedback against the in-process app: statuses, list form, counters, durability rule."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sklearn.datasets import load_breast_cancer, load_diabetes

from app.registry.store import Registry
from tests.helpers.monitoring import register_regressor

MODEL = "breast-cancer"


def _rows(registry_path: Path, n: int) -> list[list[float]]:
    return [row.tolist() for row in load_breast_cancer().data[:n]]


def _predict(client: TestClient, rows: list[list[float]]) -> tuple[list[str], list[int], str]:
    resp = client.post("/predict", json={"instances": rows})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return body["prediction_ids"], body["predictions"], body["version"]


def _count(version: str, outcome: str) -> float:
    labels = {"model": MODEL, "version": version, "outcome": outcome}
    return REGISTRY.get_sample_value("modelserve_feedback_total", labels) or 0.0


def test_single_feedback_is_judged_counted_and_stored(
    client: TestClient, registry_path: Path
) -> None:
    ids, preds, version = _predict(client, _rows(registry_path, 2))
    correct_before, incorrect_before = _count(version, "correct"), _count(version, "incorrect")
    # Sent at once: the rows may still be in the write buffer, the route must flush first.
    ok = client.post("/feedback", json={"prediction_id": ids[0], "label": preds[0]})
    assert ok.status_code == 200, ok.text
    assert ok.json() == {
        "accepted": 1,
        "feedback": [
            {"prediction_id": ids[0], "model": MODEL, "version": version, "outcome": "correct"}
        ],
    }
    wrong = client.post("/feedback", json={"prediction_id": ids[1], "label": 1 - preds[1]})
    assert wrong.status_code == 200
    assert wrong.json()["feedback"][0]["outcome"] == "incorrect"
    assert _count(version, "correct") == correct_before + 1
    assert _count(version, "incorrect") == incorrect_before + 1

    db = registry_path.parent / "data" / "predictions.db"
    with sqlite3.connect(db) as conn:
        stored = dict(conn.execute("SELECT prediction_id, outcome FROM feedback").fetchall())
        logged = conn.execute(
            "SELECT model, version FROM predictions WHERE id = ?", (ids[0],)
        ).fetchone()
    assert stored == {ids[0]: "correct", ids[1]: "incorrect"}
    assert logged == (MODEL, version)


def test_list_form_is_accepted_whole(client: TestClient, registry_path: Path) -> None:
    ids, preds, _ = _predict(client, _rows(registry_path, 3))
    body = [{"prediction_id": i, "label": p} for i, p in zip(ids, preds, strict=True)]
    resp = client.post("/feedback", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 3
    assert [f["prediction_id"] for f in resp.json()["feedback"]] == ids


def test_unknown_id_is_404(client: TestClient) -> None:
    resp = client.post("/feedback", json={"prediction_id": "f" * 32, "label": 1})
    assert resp.status_code == 404
    assert resp.json()["error"]["type"] == "unknown_prediction"
    assert resp.json()["error"]["field"] == "prediction_id"


def test_second_label_is_409(client: TestClient, registry_path: Path) -> None:
    ids, _, _ = _predict(client, _rows(registry_path, 1))
    assert client.post("/feedback", json={"prediction_id": ids[0], "label": 1}).status_code == 200
    again = client.post("/feedback", json={"prediction_id": ids[0], "label": 0})
    assert again.status_code == 409
    assert again.json()["error"] == {
        "status": 409,
        "type": "duplicate_feedback",
        "field": "prediction_id",
        "message": f"prediction {ids[0]!r} already has a label",
    }


def test_list_is_all_or_nothing(client: TestClient, registry_path: Path) -> None:
    ids, _, _ = _predict(client, _rows(registry_path, 2))
    bad = [{"prediction_id": ids[0], "label": 1}, {"prediction_id": ids[1], "label": 7}]
    resp = client.post("/feedback", json=bad)
    assert resp.status_code == 422
    assert resp.json()["error"]["field"] == "[1].label"
    # Nothing of the refused request was stored: the first id can still be labelled.
    assert client.post("/feedback", json={"prediction_id": ids[0], "label": 1}).status_code == 200
    twice = [{"prediction_id": ids[1], "label": 1}, {"prediction_id": ids[1], "label": 1}]
    dup = client.post("/feedback", json=twice)
    assert dup.status_code == 409
    assert dup.json()["error"]["field"] == "[1].prediction_id"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"prediction_id": "PLACEHOLDER", "label": 2}, 422, "label"),
        ({"prediction_id": "PLACEHOLDER", "label": "malignant"}, 422, "label"),
        ({"prediction_id": "PLACEHOLDER"}, 422, "label"),
        ({"prediction_id": "PLACEHOLDER", "label": [1]}, 422, "label"),
        ({"label": 1}, 422, "prediction_id"),
        ({"prediction_id": 5, "label": 1}, 422, "prediction_id"),
        ([], 422, "body"),
        ([5], 422, "[0]"),
    ],
)
def test_bad_feedback_names_the_field(
    client: TestClient, registry_path: Path, body: object, status: int, field: str
) -> None:
    ids, _, _ = _predict(client, _rows(registry_path, 1))
    if isinstance(body, dict) and body.get("prediction_id") == "PLACEHOLDER":
        body = {**body, "prediction_id": ids[0]}
    resp = client.post("/feedback", json=body)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["field"] == field


def test_not_json_is_400(client: TestClient) -> None:
    resp = client.post("/feedback", content=b"{nope", headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_json"


def test_label_may_be_the_class_as_a_string(client: TestClient, registry_path: Path) -> None:
    ids, preds, _ = _predict(client, _rows(registry_path, 1))
    resp = client.post("/feedback", json={"prediction_id": ids[0], "label": str(preds[0])})
    assert resp.status_code == 200
    assert resp.json()["feedback"][0]["outcome"] == "correct"


def test_regressor_feedback_observes_absolute_error(
    make_client: Callable[..., TestClient], registry: Registry
) -> None:
    version = register_regressor(registry)
    client = make_client(default_model="diabetes")
    data = load_diabetes()
    resp = client.post("/predict", json={"instances": [data.data[0].tolist()]})
    assert resp.status_code == 200, resp.text
    pid, predicted = resp.json()["prediction_ids"][0], resp.json()["predictions"][0]
    labels = {"model": "diabetes", "version": version}
    before = REGISTRY.get_sample_value("modelserve_feedback_error_sum", labels) or 0.0
    fb = client.post("/feedback", json={"prediction_id": pid, "label": predicted + 12.5})
    assert fb.status_code == 200, fb.text
    assert fb.json()["feedback"][0]["error"] == pytest.approx(12.5)
    after = REGISTRY.get_sample_value("modelserve_feedback_error_sum", labels)
    assert after == pytest.approx(before + 12.5)
    second = client.post("/predict", json={"instances": [data.data[1].tolist()]})
    other = second.json()["prediction_ids"][0]
    bad = client.post("/feedback", json={"prediction_id": other, "label": "high"})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "label"
