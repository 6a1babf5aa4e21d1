"""Live confidence: every prediction adds its calibrated top-class probability, per version."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from sklearn.datasets import load_breast_cancer

from app import metrics
from app.registry.store import Registry
from app.serving.confidence import ConfidenceCounter
from tests.helpers.lifecycle import NAME, train_quick
from tests.helpers.promtext import samples, total

ROWS = np.asarray(load_breast_cancer().data, dtype=np.float64)[::3]


def _scrape(client: TestClient) -> str:
    text: str = client.get("/metrics").text
    return text


def _predict(client: TestClient, rows: npt.NDArray[np.float64]) -> str:
    for start in range(0, len(rows), 7):  # several batches of uneven size
        resp = client.post("/predict", json={"instances": rows[start : start + 7].tolist()})
        assert resp.status_code == 200, resp.text
    return _scrape(client)


def test_calibrated_confidence_sum_count_and_buckets_per_version(
    registry_path: Path, make_client: Callable[..., TestClient]
) -> None:
    out = train_quick(
        registry_path,
        **{
            "estimator.class": "sklearn.naive_bayes.GaussianNB",
            "estimator.params": {},
            "gate.thresholds": {},
        },
    )
    registry = Registry(registry_path)
    registry.set_alias(NAME, "production", str(out.version))
    meta = registry.metadata(NAME, str(out.version))
    assert meta.calibration is not None and meta.calibration.map is not None
    client = make_client()
    labels = {"model": NAME, "version": str(out.version)}
    before = _scrape(client)
    after = _predict(client, ROWS)

    top = registry.load(NAME, str(out.version)).estimator.predict_proba(ROWS).max(axis=1)
    expected = np.interp(top, meta.calibration.map.x, meta.calibration.map.y)

    def delta(name: str, **extra: str) -> float:
        return total(after, name, {**labels, **extra}) - total(before, name, {**labels, **extra})

    assert delta("modelserve_prediction_confidence_count") == len(ROWS)
    assert delta("modelserve_prediction_confidence_sum") == pytest.approx(expected.sum())
    for le in ("0.5", "0.8", "0.95", "1.0"):
        at_most = int((expected <= float(le)).sum())
        assert delta("modelserve_prediction_confidence_bucket", le=le) == at_most
    heldout = total(after, "modelserve_heldout_accuracy_ratio", labels)
    assert heldout == pytest.approx(meta.metrics["accuracy"])


def test_uncalibrated_versions_add_the_raw_probability_and_regressors_nothing(
    registry: Registry, make_client: Callable[..., TestClient]
) -> None:
    client = make_client()
    labels = {"model": NAME, "version": "1"}
    before = _scrape(client)
    after = _predict(client, ROWS[:20])
    raw = registry.load(NAME, "1").estimator.predict_proba(ROWS[:20]).max(axis=1)
    gained = total(after, "modelserve_prediction_confidence_sum", labels) - total(
        before, "modelserve_prediction_confidence_sum", labels
    )
    assert gained == pytest.approx(raw.sum())
    regressor = ConfidenceCounter(registry.metadata(NAME, "1").model_copy(
        update={"task": "regression", "name": "reg"}), has_proba=False)  # fmt: skip
    regressor.observe(np.array([[0.2, 0.8]]))
    assert not [
        s for s in samples(_scrape(client), "modelserve_prediction_confidence_count")
        if s.labels["model"] == "reg"
    ]  # fmt: skip


def test_batch_counting_matches_prometheus_client_observe(registry: Registry) -> None:
    """The per-batch increments give the exposition one observe() per row would."""
    values = np.random.default_rng(1).uniform(0, 1, 500)
    values[:5] = [0.2, 0.5, 1.0, 0.85, 0.0]  # on the bucket bounds
    counter = ConfidenceCounter(
        registry.metadata(NAME, "1").model_copy(update={"name": "batch-check"}), has_proba=True
    )
    table = np.column_stack([values, values])
    for row in table[:5]:  # single-row calls, then one batch
        counter.observe(row[None, :])
    counter.observe(table[5:])
    private = CollectorRegistry()
    reference = Histogram(
        "modelserve_prediction_confidence", "x", ["model", "version"], registry=private,
        buckets=metrics.PREDICTION_CONFIDENCE._upper_bounds[:-1],
    )  # fmt: skip
    for v in values:
        reference.labels("batch-check", "1").observe(float(v))
    ours = _histogram(generate_latest(REGISTRY).decode(), "batch-check")
    theirs = _histogram(generate_latest(private).decode(), "batch-check")
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value), key


def _histogram(text: str, model: str) -> dict[tuple[str, str | None], float]:
    return {
        (s.name, s.labels.get("le")): s.value
        for part in ("bucket", "count", "sum")
        for s in samples(text, f"modelserve_prediction_confidence_{part}")
        if s.labels.get("model") == model
    }
