"""A canary answers its share of production's requests on every protocol, chosen by routing key."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer

from app.registry.roles import RoleAliases
from app.registry.store import Registry
from app.serving.routing import to_canary
from tests.helpers.lifecycle import NAME, train_quick
from tests.helpers.promtext import total

pytestmark = pytest.mark.slow  # each app starts its off-path scorer process

KEYS = [f"customer-{i}" for i in range(150)]


@pytest.fixture
def canaried(registry_path: Path) -> Registry:
    train_quick(registry_path, **{"estimator.params.C": 0.002})
    registry = Registry(registry_path)
    RoleAliases(registry).start_canary(NAME, "2", 10, reason="canary")
    return registry


def _version(client: TestClient, route: str, row: list[float], key: str) -> str:
    headers = {"X-Routing-Key": key}
    if route == "v2":
        body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, len(row)], "data": row}]}
        response = client.post(f"/v2/models/{NAME}/infer", json=body, headers=headers)
        assert response.status_code == 200, response.text
        return str(response.json()["model_version"])
    if route == "invocations":
        response = client.post("/invocations", json={"instances": [row]}, headers=headers)
        assert response.status_code == 200, response.text
        return str(response.headers["x-model-version"])
    path = "/predict" if route == "predict" else f"/v1/models/{NAME}:predict"
    response = client.post(path, json={"instances": [row]}, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["version"])


@pytest.mark.parametrize("route", ["predict", "v1", "v2", "invocations"])
def test_each_key_gets_the_version_its_hash_chooses_on_every_route(
    canaried: Registry, make_client: Callable[..., TestClient], route: str
) -> None:
    client = make_client()
    row = load_breast_cancer().data[0].tolist()
    got = {key: _version(client, route, row, key) for key in KEYS}
    want = {key: "2" if to_canary(key, 0.10) else "1" for key in KEYS}
    assert got == want
    assert 0 < sum(v == "2" for v in got.values()) < len(KEYS) / 4
    # The same key again: the same version.
    assert all(_version(client, route, row, k) == got[k] for k in KEYS[:20])


def test_canary_requests_are_counted_per_version_and_compared_with_production(
    canaried: Registry, make_client: Callable[..., TestClient]
) -> None:
    client = make_client()
    before = client.get("/metrics").text
    row = load_breast_cancer().data[3].tolist()
    canary_keys = [k for k in KEYS if to_canary(k, 0.10)]
    for key in canary_keys:
        assert _version(client, "predict", row, key) == "2"
    text = client.get("/metrics").text

    def delta(name: str, labels: dict[str, str]) -> float:
        return total(text, name, labels) - total(before, name, labels)

    ok = {"model": NAME, "version": "2", "outcome": "ok"}
    assert delta("modelserve_version_requests_total", ok) == len(canary_keys)
    assert total(text, "modelserve_canary_weight_ratio", {"model": NAME}) == pytest.approx(0.1)
    assert (
        total(text, "modelserve_version_role", {"model": NAME, "version": "2", "role": "canary"})
        == 1
    )
    assert (
        total(
            text, "modelserve_version_role", {"model": NAME, "version": "1", "role": "production"}
        )
        == 1
    )
    # Production scored the canary's rows off the request path: agreement for version 2 (the
    # scorer runs at idle priority: with other tests busy on every core it waits for the CPU).
    deadline = time.monotonic() + 120
    while delta("modelserve_agreement_total", {"model": NAME, "version": "2"}) < len(canary_keys):
        assert time.monotonic() < deadline, "agreement never counted"
        time.sleep(0.05)
        text = client.get("/metrics").text
    assert delta("modelserve_agreement_total", {"model": NAME, "version": "2"}) == len(canary_keys)


def test_a_pinned_version_is_never_split(
    canaried: Registry, make_client: Callable[..., TestClient]
) -> None:
    client = make_client()
    row = load_breast_cancer().data[0].tolist()
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, len(row)], "data": row}]}
    for key in KEYS[:40]:
        response = client.post(
            f"/v2/models/{NAME}/versions/1/infer", json=body, headers={"X-Routing-Key": key}
        )
        assert response.json()["model_version"] == "1"
