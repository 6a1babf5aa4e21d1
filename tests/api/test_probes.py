"""The probes other servers' clients poll: KServe V1's liveness (GET /), model list and model
status, MLflow's /ping, /health and /version. Each is answered the way that client expects,
ready or not."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from app import __version__
from app.config import Settings
from tests.helpers.app_factory import build_app

MODEL = "breast-cancer"


def test_kserve_v1_lists_served_models_and_says_each_is_ready(client: TestClient) -> None:
    assert client.get("/v1/models").json() == {"models": [MODEL]}
    status = client.get(f"/v1/models/{MODEL}")
    assert status.status_code == 200
    assert status.json() == {"name": MODEL, "ready": True}


def test_kserve_liveness_is_the_root_as_on_kserves_server(client: TestClient) -> None:
    response = client.get("/")
    assert (response.status_code, response.json()) == (200, {"status": "alive"})
    assert client.get("/health/live").json() == response.json()


def test_kserve_v1_status_of_an_unknown_model_is_a_named_404(client: TestClient) -> None:
    response = client.get("/v1/models/nope")
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["type"], error["field"]) == ("unknown_model", "name")
    assert "nope" in error["message"]


def test_mlflow_probes_answer_200_when_ready_and_version_is_the_servers(
    client: TestClient,
) -> None:
    for path in ("/ping", "/health"):
        response = client.get(path)
        assert (response.status_code, response.text) == (200, "\n"), path
    version = client.get("/version")
    assert (version.status_code, version.text) == (200, __version__)


def test_a_model_that_cannot_load_is_not_ready_on_every_probe(registry_path: Path) -> None:
    """KServe's status stays 200 with ready false (its probe reads the field); MLflow's /ping
    and /health are 503 like /health/ready, so a balancer or an MLflow client waits."""
    (registry_path / MODEL / "1" / "model.joblib").write_bytes(b"not the registered bytes")
    settings = Settings(registry=registry_path, poll_interval_s=0, prediction_log_enabled=False)
    with TestClient(build_app(settings), raise_server_exceptions=False) as client:
        # Wait for the failed load (its error is the refusal's message, set once it has run).
        deadline = time.monotonic() + 30
        while client.get("/health/ready").json()["models"][MODEL]["error"] is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert client.get("/health/ready").status_code == 503
        assert client.get("/").status_code == 200  # alive: the process answers, not ready
        assert client.get(f"/v1/models/{MODEL}").json() == {"name": MODEL, "ready": False}
        assert client.get("/v1/models").json() == {"models": [MODEL]}
        assert client.get("/ping").status_code == 503
        assert client.get("/health").status_code == 503
