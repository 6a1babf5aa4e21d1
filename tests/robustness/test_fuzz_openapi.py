"""schemathesis against the service's own OpenAPI schema, sent to a real server: every route,
admin with, without and with a wrong token, a bounded number of examples each; no 5xx, every
response as documented."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import Settings
from tests.app_factory import build_app
from tests.support import MODELS, Server, copy_registry

TOKEN = "fuzz-admin-token"
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The schema is the app's own, generated from the committed registry (nothing is loaded).
schema = schemathesis.openapi.from_dict(
    build_app(Settings(registry=MODELS, admin_token=TOKEN, prediction_log_enabled=False)).openapi()
)


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="modelserve-fuzz-") as tmp:
        env = {
            "MODELSERVE_ADMIN_TOKEN": TOKEN,
            "MODELSERVE_POLL_INTERVAL_S": "0",
            "MODELSERVE_LOG_LEVEL": "warning",
        }
        with Server(copy_registry(Path(tmp) / "models"), workdir=Path(tmp), env=env) as server:
            server.wait_ready()
            yield server.url


@pytest.mark.e2e
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_is_as_documented(case: schemathesis.Case[Any], server_url: str) -> None:
    for token in (TOKEN, None, "wrong"):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        case.call_and_validate(base_url=server_url, headers=headers, checks=CHECKS)
