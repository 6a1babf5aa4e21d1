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
from tests.helpers.app_factory import build_app
from tests.helpers.mixed import MIXED, register_churn
from tests.helpers.support import MODELS, Server, copy_registry

TOKEN = "fuzz-admin-token"
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The app's own schema (nothing is loaded; the committed registry gives the docs example). The
# request shapes it documents are the same for every model; the server's default model is a
# mixed-type one, so generated strings, booleans and nulls meet typed validation.
schema = schemathesis.openapi.from_dict(
    build_app(Settings(registry=MODELS, admin_token=TOKEN, prediction_log_enabled=False)).openapi()
)


@pytest.fixture(scope="module")
def fuzz_registry() -> Iterator[Path]:
    """The committed registry plus a mixed-type model (strings, booleans, nulls) as default."""
    with tempfile.TemporaryDirectory(prefix="modelserve-fuzz-") as tmp:
        registry = copy_registry(Path(tmp) / "models")
        register_churn(registry, Path(tmp))
        yield registry


@pytest.fixture(scope="module")
def server_url(fuzz_registry: Path) -> Iterator[str]:
    env = {
        "MODELSERVE_ADMIN_TOKEN": TOKEN,
        "MODELSERVE_POLL_INTERVAL_S": "0",
        "MODELSERVE_LOG_LEVEL": "warning",
        "MODELSERVE_MODEL": MIXED,
    }
    with Server(fuzz_registry, workdir=fuzz_registry.parent, env=env) as server:
        server.wait_ready()
        yield server.url


@pytest.mark.e2e
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_is_as_documented(case: schemathesis.Case[Any], server_url: str) -> None:
    for token in (TOKEN, None, "wrong"):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        case.call_and_validate(base_url=server_url, headers=headers, checks=CHECKS)
