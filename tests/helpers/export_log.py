"""A prediction log with known production rows, for the export and retraining tests."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

from app.monitoring.backend import open_backend
from app.monitoring.records import FeedbackRow
from app.registry.store import Registry
from tests.helpers.lifecycle import NAME

ROWS, LABELLED = 300, 250


def fill_log(url: str, registry: Registry, tmp_path: Path) -> list[str]:
    """ROWS production rows (training rows nudged by 5% of a std, so none is a duplicate),
    scored by version 1, LABELLED of them with their true label, one hour old at most."""
    data = load_breast_cancer()
    rng = np.random.default_rng(0)
    index = rng.permutation(len(data.target))[:ROWS]
    X = data.data[index] + rng.normal(0, 0.05, (ROWS, data.data.shape[1])) * data.data.std(0)
    model = registry.load(NAME, "1").estimator
    predicted, proba = model.predict(X), model.predict_proba(X)
    now = time.time()
    ids = [uuid.uuid4().hex for _ in range(ROWS)]
    backend = open_backend(url, tmp_path / "unused.db")
    try:
        backend.write_predictions(
            [
                (
                    pid,
                    now - 3600 + i,
                    NAME,
                    "1",
                    json.dumps(X[i].tolist()),
                    json.dumps(
                        {"prediction": int(predicted[i]), "probabilities": proba[i].tolist()}
                    ),
                )
                for i, pid in enumerate(ids)
            ]
        )
        backend.add_feedback(
            [
                FeedbackRow(
                    pid, now, json.dumps(int(data.target[index[i]])),
                    "correct" if predicted[i] == data.target[index[i]] else "incorrect", None,
                )
                for i, pid in enumerate(ids[:LABELLED])
            ]
        )  # fmt: skip
    finally:
        backend.close()
    return ids
