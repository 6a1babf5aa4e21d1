"""Answers of /predict, KServe V1 and OIP v2 are sampled into the attribution counters after
they are sent (MODELSERVE_ATTRIBUTION_SAMPLE_RATE); 0 samples nothing. In-process app."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer

from tests.helpers.promtext import total

MODEL = "breast-cancer"
DATA = load_breast_cancer().data


def _rows_counted(client: TestClient) -> float:
    text = client.get("/metrics").text
    return total(text, "modelserve_attribution_rows_total", {"model": MODEL, "version": "1"})


def _predict_every_way(client: TestClient) -> int:
    """One request per protocol; the rows sent."""
    bodies = [("/predict", DATA[:1]), (f"/v1/models/{MODEL}:predict", DATA[1:4])]
    for path, rows in bodies:
        assert client.post(path, json={"instances": rows.tolist()}).status_code == 200
    tensor = {"name": "x", "shape": [5, 30], "datatype": "FP64", "data": DATA[4:9].ravel().tolist()}
    v2 = {"inputs": [tensor]}
    assert client.post(f"/v2/models/{MODEL}/infer", json=v2).status_code == 200
    return 1 + 3 + 5


def test_every_answered_row_is_explained_at_rate_one(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(attribution_sample_rate=1.0)
    before = _rows_counted(client)
    sent = _predict_every_way(client)
    deadline = time.monotonic() + 30
    while _rows_counted(client) - before < sent and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _rows_counted(client) - before == sent
    text = client.get("/metrics").text
    per_feature = [
        total(text, "modelserve_attribution_abs_sum_total", {"model": MODEL, "feature": name})
        for name in load_breast_cancer().feature_names
    ]
    assert np.all(np.asarray(per_feature) > 0)


def test_a_rate_of_zero_samples_nothing(make_client: Callable[..., TestClient]) -> None:
    client = make_client(attribution_sample_rate=0.0)
    assert client.app.state.services.inference.attribution is None  # type: ignore[attr-defined]
    before = _rows_counted(client)
    _predict_every_way(client)
    assert _rows_counted(client) == before
