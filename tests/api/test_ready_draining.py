"""While the server drains before it stops (SIGTERM, ``app/server/drain.py`` sets the
lifespan state's ``draining`` event), /health/ready answers 503 ``draining`` and predictions
are still answered."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer

from app.registry.store import Registry

MODEL = "breast-cancer"


def test_ready_turns_503_draining_while_predictions_are_still_answered(
    client: TestClient, registry: Registry
) -> None:
    assert client.get("/health/ready").json()["status"] == "ready"
    flag = client.app_state["draining"]
    assert isinstance(flag, threading.Event) and not flag.is_set()
    flag.set()
    ready = client.get("/health/ready")
    # Every readiness probe a balancer or client may use says the same.
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/v2/health/ready").json() == {"ready": False}
    assert client.get("/ping").status_code == 503
    assert ready.status_code == 503
    assert ready.json()["status"] == "draining"
    assert ready.json()["models"][MODEL]["ready"] is True  # the models are fine: it is stopping
    row = load_breast_cancer().data[:1]
    answer = client.post("/predict", json={"instances": row.tolist()})
    assert answer.status_code == 200, answer.text
    estimator = registry.load(MODEL, answer.json()["version"]).estimator
    assert answer.json()["predictions"] == estimator.predict(row).tolist()
