"""Access: admin token compared in constant time and never logged, /metrics on a private
port, CORS off unless configured."""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.api.routes import admin
from tests.helpers.support import Server, free_port

ORIGIN = "https://dashboard.example"


def test_admin_token_is_compared_in_constant_time() -> None:
    source = inspect.getsource(admin._require_token)
    assert "hmac.compare_digest" in source
    assert "== expected" not in source and "!= expected" not in source


def test_cors_is_off_by_default(client: TestClient) -> None:
    preflight = client.options(
        "/predict",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    simple = client.get("/health/live", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in simple.headers


def test_cors_allows_only_the_configured_origins(make_client: Callable[..., TestClient]) -> None:
    client = make_client(cors_origins=[ORIGIN])
    allowed = client.options(
        "/predict", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    keyed = client.options(
        "/predict",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-routing-key",
        },
    )
    assert keyed.status_code == 200, "a browser may send its routing key (canary stickiness)"
    other = client.get("/health/live", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    assert (
        client.get("/health/live", headers={"Origin": ORIGIN}).headers[
            "access-control-allow-origin"
        ]
        == ORIGIN
    )


@pytest.mark.e2e
def test_token_never_logged_and_metrics_only_on_their_port(
    registry_path: Path, server_factory: Callable[..., Server]
) -> None:
    token = secrets.token_urlsafe(24)
    metrics_port = free_port()
    server = server_factory(
        registry_path,
        env={
            "MODELSERVE_ADMIN_TOKEN": token,
            "MODELSERVE_METRICS_PORT": str(metrics_port),
            "MODELSERVE_LOG_LEVEL": "debug",
            "MODELSERVE_LOG_FORMAT": "json",
        },
    )
    server.wait_ready()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        ok = client.post("/admin/reload", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200, ok.text
        wrong = client.post("/admin/reload", headers={"Authorization": f"Bearer {token}x"})
        assert wrong.status_code == 403
        assert token not in wrong.text
        missing = client.post("/admin/reload")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        # The token sent where it does not belong is not echoed or logged either.
        odd = client.post("/predict", content=token.encode(), headers={"X-Api-Key": token})
        assert odd.status_code == 400 and token not in odd.text

        assert client.get("/metrics").status_code == 404  # not on the public port
        private = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        assert private.status_code == 200
        assert "modelserve_model_info" in private.text
        assert 'handler="/admin/reload"' in private.text
    assert server.stop() == 0
    logs = server.logs()
    assert "/admin/reload" in logs, "the admin calls were logged (without their token)"
    assert token not in logs
