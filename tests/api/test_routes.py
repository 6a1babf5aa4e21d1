"""The read-side of the API: KServe-shaped predict, registry listing, OpenAPI and /docs."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from app.registry.store import Registry

MODEL = "breast-cancer"


def test_v1_predict_accepts_lists_and_named_objects(client: TestClient, registry: Registry) -> None:
    artifact = registry.load(MODEL, "1")
    names = artifact.metadata.feature_names
    example = np.asarray(artifact.metadata.example, dtype=np.float64)
    X = np.asarray([example, example * 0.8])
    instances = [X[0].tolist(), dict(zip(names, X[1].tolist(), strict=True))]

    response = client.post(f"/v1/models/{MODEL}:predict", json={"instances": instances})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == MODEL and body["version"] == "1"
    assert body["predictions"] == artifact.estimator.predict(X).tolist()
    assert body["probabilities"] == artifact.estimator.predict_proba(X).tolist()
    assert len(set(body["prediction_ids"])) == 2


def test_models_show_versions_aliases_metadata_and_schema(
    client: TestClient, registry: Registry
) -> None:
    listing = client.get("/models").json()["models"]
    entry = next(m for m in listing if m["name"] == MODEL)
    assert entry["versions"] == ["1"]
    assert entry["aliases"] == {"production": "1"}
    assert entry["served_version"] == "1"

    detail = client.get(f"/models/{MODEL}")
    assert detail.status_code == 200
    body = detail.json()
    assert body["alias_history"][0]["alias"] == "production"
    (meta,) = body["metadata"]
    recorded = registry.metadata(MODEL, "1")
    assert meta["version"] == "1" and meta["sha256"] == recorded.sha256
    assert meta["task"] == "classification" and meta["classes"] == [0, 1]
    assert [f["name"] for f in meta["features"]] == recorded.feature_names
    assert len(meta["features"]) == 30
    assert {f["dtype"] for f in meta["features"]} == {"float64"}
    assert meta["metrics"]["accuracy"] > 0.9
    for key in ("created_at", "python_version", "sklearn_version", "data_fingerprint"):
        assert meta[key], key

    missing = client.get("/models/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "unknown_model"


def test_openapi_example_is_built_from_the_features_and_works(
    client: TestClient, registry: Registry
) -> None:
    names = registry.metadata(MODEL, "1").feature_names
    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    examples = content["examples"]
    by_name = examples["object"]["value"]["instances"][0]
    assert list(by_name) == names
    as_list = examples["list"]["value"]["instances"][0]
    assert len(as_list) == 30 and all(isinstance(v, float) for v in as_list)

    for example in examples.values():
        assert client.post("/predict", json=example["value"]).status_code == 200

    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower() and "/openapi.json" in docs.text
