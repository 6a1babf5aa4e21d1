"""After N predictions /metrics shows every metric of the foundation issue, with exact counts.

Metrics are process-global (other tests score too), so every count is asserted as a delta.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LinearRegression

from app.registry.store import Registry
from app.training.train import fitted_fields
from tests.helpers.promtext import samples, total

MODEL = "breast-cancer"
REGRESSOR = "diabetes"
BATCHES = [1, 3, 7, 2, 5]  # instances per sequential request: one model call each
EVERY_METRIC = [
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "http_requests_inprogress",
    "modelserve_inference_duration_seconds_bucket",
    "modelserve_predictions_total",
    "modelserve_prediction_value_count",
    "modelserve_prediction_errors_total",
    "modelserve_batch_size_count",
    "modelserve_model_info",
    "modelserve_model_loaded_timestamp_seconds",
    "modelserve_prediction_confidence_count",
    "modelserve_heldout_accuracy_ratio",
]


def register_regressor(root: Path) -> Registry:
    """A real linear regressor on sklearn's bundled diabetes data, served in production."""
    data = load_diabetes()
    X = np.asarray(data.data, dtype=np.float64)
    estimator = LinearRegression().fit(X, data.target)
    registry = Registry(root)
    names = [str(n) for n in data.feature_names]
    fields = fitted_fields(estimator, "regression", names, X, data.target, X[0])
    meta = registry.register(REGRESSOR, estimator, fields)
    registry.set_alias(REGRESSOR, "production", meta.version)
    return registry


@pytest.fixture
def scored_client(registry_path: Path, make_client: Callable[..., TestClient]) -> TestClient:
    register_regressor(registry_path)
    client = make_client()
    assert client.get("/health/ready").json()["models"][REGRESSOR]["ready"] is True
    return client


def _post(client: TestClient, path: str, rows: Any) -> Any:
    response = client.post(path, json={"instances": rows})
    assert response.status_code == 200, response.text
    return response.json()


def test_metrics_after_n_predictions(scored_client: TestClient, registry: Registry) -> None:
    client = scored_client
    artifact = registry.load(MODEL, "1")
    X = np.asarray(load_breast_cancer().data, dtype=np.float64)[::9]  # both classes present
    before = client.get("/metrics").text

    rows_sent = 0
    for i, size in enumerate(BATCHES):
        rows = X[rows_sent : rows_sent + size].tolist()
        path = "/predict" if i % 2 == 0 else f"/v1/models/{MODEL}:predict"
        _post(client, path, rows)
        rows_sent += size
    n = sum(BATCHES)
    expected_classes = Counter(str(c) for c in artifact.estimator.predict(X[:n]).tolist())
    assert len(expected_classes) == 2

    Xd = np.asarray(load_diabetes().data, dtype=np.float64)[:4]
    regression = _post(client, f"/v1/models/{REGRESSOR}:predict", Xd.tolist())["predictions"]

    bad_value = client.post("/predict", json={"instances": [[1.0] * 29 + [None]]})
    bad_count = client.post("/predict", json={"instances": [[1.0] * 3]})
    unknown = client.post("/v1/models/nope:predict", json={"instances": [[1.0] * 30]})
    assert (bad_value.status_code, bad_count.status_code, unknown.status_code) == (422, 422, 404)

    after = client.get("/metrics").text

    def delta(name: str, **labels: str) -> float:
        return total(after, name, labels) - total(before, name, labels)

    for name in EVERY_METRIC:
        assert samples(after, name), f"{name} missing from /metrics"

    # modelserve_predictions_total sums to N, split exactly as the model predicts in-process.
    assert delta("modelserve_predictions_total", model=MODEL, version="1") == n
    for label, count in expected_classes.items():
        assert (
            delta("modelserve_predictions_total", model=MODEL, version="1", **{"class": label})
            == count
        )

    # modelserve_batch_size counts model calls; sequential requests are one call each.
    assert delta("modelserve_batch_size_count", model=MODEL) == len(BATCHES)
    assert delta("modelserve_batch_size_sum", model=MODEL) == n
    assert delta("modelserve_inference_duration_seconds_count", model=MODEL, version="1") == len(
        BATCHES
    )
    assert delta("modelserve_inference_duration_seconds_sum", model=MODEL, version="1") > 0

    # Regressors get the value histogram instead of per-class counts.
    assert delta("modelserve_prediction_value_count", model=REGRESSOR, version="1") == 4
    for le in ("100", "1000"):
        at_most = sum(1 for value in regression if value <= float(le))
        assert delta("modelserve_prediction_value_bucket", model=REGRESSOR, le=le + ".0") == at_most
    assert delta("modelserve_predictions_total", model=REGRESSOR) == 0

    # Inference buckets resolve 50 µs .. 5 s.
    bounds = sorted(
        float(s.labels["le"])
        for s in samples(after, "modelserve_inference_duration_seconds_bucket")
        if s.labels["model"] == MODEL
    )
    finite = [b for b in bounds if b != float("inf")]
    assert finite[0] == pytest.approx(50e-6)
    assert finite[-1] == pytest.approx(5.0)
    assert len(set(finite)) >= 10

    # model_info = 1 carrying the artifact's sha256; load time is a real timestamp.
    meta = registry.metadata(MODEL, "1")
    info = total(
        after, "modelserve_model_info", {"model": MODEL, "version": "1", "sha256": meta.sha256}
    )
    assert info == 1
    loaded = total(
        after, "modelserve_model_loaded_timestamp_seconds", {"model": MODEL, "version": "1"}
    )
    assert time.time() - 3600 < loaded <= time.time()

    # Errors are counted by reason; unknown model names share one label value.
    assert delta("modelserve_prediction_errors_total", model=MODEL, reason="invalid_value") == 1
    assert delta("modelserve_prediction_errors_total", model=MODEL, reason="invalid_features") == 1
    assert (
        delta("modelserve_prediction_errors_total", model="_unknown", reason="unknown_model") == 1
    )

    # HTTP metrics are grouped by route template, never by raw path.
    v1 = {"handler": "/v1/models/{name}:predict", "method": "POST"}
    assert delta("http_requests_total", **v1, status="200") == 3  # 2 breast-cancer + 1 diabetes
    assert delta("http_requests_total", **v1, status="404") == 1
    assert delta("http_requests_total", handler="/predict", method="POST", status="200") == 3
    assert delta("http_requests_total", handler="/predict", method="POST", status="422") == 2
    handlers = {s.labels["handler"] for s in samples(after, "http_requests_total")}
    assert not [h for h in handlers if MODEL in h or "nope" in h or REGRESSOR in h]
    assert delta("http_request_duration_seconds_count", handler="/predict", method="POST") == 5


def test_every_app_in_a_process_counts_its_http_requests(
    make_client: Callable[..., TestClient], registry: Registry
) -> None:
    row = registry.metadata(MODEL, "1").example
    ok = {"handler": "/predict", "method": "POST", "status": "200"}
    for _ in range(2):  # the second app used to lose its HTTP metrics to the first
        client = make_client()
        before = total(client.get("/metrics").text, "http_requests_total", ok)
        _post(client, "/predict", [row])
        _post(client, "/predict", [row])
        after = client.get("/metrics").text
        assert total(after, "http_requests_total", ok) - before == 2
        assert samples(after, "http_requests_inprogress")


def test_http_latency_buckets_resolve_millisecond_requests(client: TestClient) -> None:
    """The per-route latency histogram feeds the p95 alert: it must resolve 1 ms .. 10 s."""
    assert client.get("/health/live").status_code == 200
    text = client.get("/metrics").text
    bounds = {
        s.labels["le"]
        for s in samples(text, "http_request_duration_seconds_bucket")
        if s.labels.get("handler") == "/health/live"
    }
    assert {"0.001", "0.005", "0.025", "0.1", "1.0", "10.0", "+Inf"} <= bounds
