"""A text model served: each instance is the text itself (or a one-value row or object), the
model gets one document per row, and anything else is a 422 naming the instance."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import joblib
import pytest
from fastapi.testclient import TestClient

from app.registry.store import Registry
from app.training.register import Request, run
from tests.training.test_register_text import reviews, text_model


@pytest.fixture
def client(registry_path: Path, make_client: Callable[..., TestClient]) -> TestClient:
    artifact, sample = registry_path.parent / "reviews.joblib", registry_path.parent / "s.csv"
    joblib.dump(text_model(), artifact)
    sample_rows = reviews()
    sample_rows.loc[::4, "review"] = ""  # empty cells, the first row's too: its example is ""
    sample_rows.to_csv(sample, index=False)
    run(Request("reviews", artifact, sample, "label", promote=True), Registry(registry_path))
    return make_client(max_string_length=200)


def test_texts_as_strings_rows_or_objects_answer_what_the_model_does(client: TestClient) -> None:
    texts = [*reviews().review[:4], "an unseen word: zebra ✓", ""]
    model = text_model()
    expected = model.predict(texts).tolist(), model.predict_proba(texts).tolist()
    for instances in (texts, [[t] for t in texts], [{"review": t} for t in texts]):
        response = client.post("/v1/models/reviews:predict", json={"instances": instances})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["predictions"], body["probabilities"]) == expected


@pytest.mark.parametrize(
    ("instance", "field", "says"),
    [
        (None, "instances[1]", "must be a string (the text), a list of feature values"),
        (7, "instances[1]", "must be a string (the text), a list of feature values"),
        (["a", "b"], "instances[1]", "expected 1 features, got 2"),
        ([None], "instances[1][0]", "review"),
        ({"text": "x"}, "instances[1].review", "missing feature"),
        ("x" * 201, "instances[1]", "at most 200 characters"),
    ],
)
def test_anything_but_a_text_is_a_422_naming_the_instance(
    client: TestClient, instance: object, field: str, says: str
) -> None:
    body = {"instances": ["good", instance]}
    response = client.post("/v1/models/reviews:predict", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and says in error["message"], error
    after = client.post("/v1/models/reviews:predict", json={"instances": ["good"]})
    assert after.status_code == 200


def test_an_array_model_takes_no_bare_string(client: TestClient) -> None:
    response = client.post("/predict", json={"instances": ["good"]})
    assert response.status_code == 422
    assert "must be a list of feature values" in response.json()["error"]["message"]
