"""schemathesis against the service's own OpenAPI schema, sent to a real server: every route,
admin with, without and with a wrong token, a bounded number of examples each; no 5xx, every
response as documented. Then every route with path parameters gets values of any byte and any
length up to 4 KB: no 5xx, and /metrics gains no label value (a name never becomes one)."""

from __future__ import annotations

import itertools
import re
import string
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import Settings
from tests.helpers.app_factory import build_app
from tests.helpers.mixed import MIXED, register_churn
from tests.helpers.promtext import label_values
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
APP = build_app(Settings(registry=MODELS, admin_token=TOKEN, prediction_log_enabled=False))
OPENAPI = APP.openapi()
# The label values any request may add, whatever it sends: the app's own route templates (the
# instrumentator's handler label) and status codes. Both are bounded by the code, not the client.
# (httpx resolves "%2E%2E" segments, so a fuzzed path may land on any route.) Only the v2
# catch-all route is hidden from the schema.
BOUNDED = {*OPENAPI["paths"], "/v2/{path:path}"}
schema = schemathesis.openapi.from_dict(OPENAPI)
ROUTES_WITH_PARAMS = sorted(
    (method.upper(), path)
    for path, operations in OPENAPI["paths"].items()
    if "{" in path
    for method in operations
)
MAX_PARAM_BYTES = 4096
# Any bytes; and, since most random bytes are refused by the name rule at once and hypothesis
# draws mostly short values, runs of the characters a name may have and of digits at every
# length up to the limit (a name over 255 bytes reached the filesystem).
NAME_CHARS = string.ascii_letters + string.digits + "_.-"


def _long(alphabet: str) -> st.SearchStrategy[bytes]:
    """A short random pattern repeated to any length from 1 to ``MAX_PARAM_BYTES``."""
    return st.tuples(
        st.text(alphabet, min_size=1, max_size=8), st.integers(1, MAX_PARAM_BYTES)
    ).map(lambda t: (t[0] * t[1])[: t[1]].encode())


PARAM_VALUES = st.one_of(
    st.binary(max_size=MAX_PARAM_BYTES),
    _long(NAME_CHARS),
    _long(string.digits),
    _long(NAME_CHARS + "/"),
    st.sampled_from([b"breast-cancer", b"1", b"production", b"..", b".", b"%", b"/"]),
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


def _fill(path: str, values: list[bytes]) -> str:
    """``path`` with each ``{param}`` replaced by a percent-encoded value (every byte allowed)."""
    parts = iter(values)
    return re.sub(r"\{[^}]+\}", lambda _: quote(next(parts), safe=""), path)


@pytest.mark.e2e
def test_path_params_of_any_byte_and_length_are_no_server_error(server_url: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server_url, headers=headers, timeout=30) as client:

        def send(method: str, path: str, values: list[bytes]) -> httpx.Response:
            body = b"{}" if method in ("POST", "PUT") else None
            return client.request(method, _fill(path, values), content=body)

        # Each route with every shape of value first: unknown names and versions, the real
        # ones, empty and slashed values (another route). The label values those
        # may add (a route's handler label, a status, `_unknown`) are there before the fuzz.
        shapes = [b"nope", b"9", b"", b"/", b"a/b", b"breast-cancer", b"1", b"production"]
        for method, path in ROUTES_WITH_PARAMS:
            for first, second in itertools.product(shapes, repeat=2):
                send(method, path, [first, second, second])
        before = label_values(client.get("/metrics").text)

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            route=st.sampled_from(ROUTES_WITH_PARAMS),
            values=st.lists(PARAM_VALUES, min_size=3, max_size=3),
        )
        def probe(route: tuple[str, str], values: list[bytes]) -> None:
            response = send(*route, values)
            assert response.status_code < 500, (route, values, response.text[:300])

        probe()
        added = label_values(client.get("/metrics").text) - before
    unbounded = {v for v in added if v not in BOUNDED and not re.fullmatch(r"[1-5][0-9]{2}", v)}
    assert not unbounded, sorted(v[:80] for v in unbounded)[:10]
