"""Promote, roll back and reload repeatedly under continuous load: zero failed requests, each
response names a version that was production during its flight, and its whole batch was
scored by that version (checked against each version's own predictions)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from app.registry.roles import RoleAliases
from app.registry.store import Registry
from tests.helpers.lifecycle import NAME, train_quick
from tests.helpers.load import Load, p99_ms
from tests.helpers.marks import LOAD_SENSITIVE
from tests.helpers.support import Server

pytestmark = [pytest.mark.e2e, LOAD_SENSITIVE]
TOKEN = "swap-test-token"
SWAPS = 6


def test_swaps_under_load_fail_nothing_and_never_mix_versions(
    registry_path: Path, server_factory: Callable[..., Server]
) -> None:
    outcome = train_quick(registry_path, **{"estimator.params.C": 0.02})
    registry = Registry(registry_path)
    assert registry.versions(NAME) == ["1", "2"], outcome
    rows = load_breast_cancer().data[::29][:20]
    expected = {
        v: registry.load(NAME, v).estimator.predict_proba(rows) for v in registry.versions(NAME)
    }
    assert not np.allclose(expected["1"], expected["2"]), "versions must be distinguishable"

    server = server_factory(
        registry_path,
        env={"MODELSERVE_ADMIN_TOKEN": TOKEN, "MODELSERVE_POLL_INTERVAL_S": "0"},
    )
    server.wait_ready()
    # Window in which each version was production (in the registry or still being served):
    # from the moment its alias was set until the reload that replaced it returned.
    windows: list[tuple[str, float, float]] = []
    current, since = registry.resolve(NAME, "production"), 0.0
    load = Load(server.url, {"instances": rows.tolist()}, threads=4).start()
    with httpx.Client(base_url=server.url, timeout=30) as admin:
        for i in range(SWAPS):
            load.wait_for((i + 1) * 40)
            changed_at = time.monotonic()
            if i % 2 == 0:
                registry.set_alias(NAME, "production", "2")
            else:
                registry.rollback(NAME, "production")
            new = registry.resolve(NAME, "production")
            reload = admin.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
            assert reload.status_code == 200, reload.text
            assert reload.json()["serving"][NAME] == new
            windows.append((current, since, time.monotonic()))
            current, since = new, changed_at
        load.wait_for((SWAPS + 1) * 40)
    outcomes = load.stop()
    windows.append((current, since, math.inf))

    failed = [o for o in outcomes if o.status != 200]
    print(
        f"requests={len(outcomes)} failed={len(failed)} swaps={SWAPS} "
        f"p99={p99_ms(outcomes):.1f}ms versions_seen={sorted({str(o.version) for o in outcomes})}"
    )
    assert not failed, failed[:3]
    assert {o.version for o in outcomes} == {"1", "2"}
    for o in outcomes:
        assert any(
            v == o.version and start <= o.end and o.start <= end for v, start, end in windows
        ), (o, windows)
    # No mixing: every response's probabilities are exactly its named version's, row by row.
    with httpx.Client(base_url=server.url, timeout=30) as client:
        body = client.post("/predict", json={"instances": rows.tolist()}).json()
        np.testing.assert_allclose(body["probabilities"], expected[body["version"]], rtol=1e-9)
    for o in outcomes:
        assert o.probabilities is not None
        np.testing.assert_allclose(o.probabilities, expected[str(o.version)], rtol=1e-9)


def test_canary_start_steps_finish_and_rollback_under_load_fail_nothing(
    registry_path: Path, server_factory: Callable[..., Server]
) -> None:
    train_quick(registry_path, **{"estimator.params.C": 0.02})
    registry = Registry(registry_path)
    deployments = RoleAliases(registry)
    rows = load_breast_cancer().data[::31][:12]
    expected = {
        v: registry.load(NAME, v).estimator.predict_proba(rows) for v in registry.versions(NAME)
    }
    server = server_factory(
        registry_path,
        env={"MODELSERVE_ADMIN_TOKEN": TOKEN, "MODELSERVE_POLL_INTERVAL_S": "0"},
    )
    server.wait_ready()
    moves: list[tuple[str, Callable[[], object]]] = [
        ("canary 10%", lambda: deployments.start_canary(NAME, "2", 10, reason="canary")),
        ("canary 50%", lambda: deployments.start_canary(NAME, "2", 50, reason="rollout 50%")),
        ("canary 90%", lambda: deployments.start_canary(NAME, "2", 90, reason="rollout 90%")),
        ("finish", lambda: deployments.promote(NAME, "2")),
        ("canary back", lambda: deployments.start_canary(NAME, "1", 30, reason="canary")),
        ("rollback", lambda: deployments.end_canary(NAME, reason="rollback")),
    ]
    load = Load(server.url, {"instances": rows.tolist()}, threads=4).start()
    with httpx.Client(base_url=server.url, timeout=30) as admin:
        for i, (_, move) in enumerate(moves):
            load.wait_for((i + 1) * 40)
            move()
            reload = admin.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
            assert reload.status_code == 200, reload.text
        load.wait_for((len(moves) + 1) * 40)
    outcomes = load.stop()
    failed = [o for o in outcomes if o.status != 200]
    print(f"requests={len(outcomes)} failed={len(failed)} moves={[m for m, _ in moves]}")
    assert not failed, failed[:3]
    assert {o.version for o in outcomes} == {"1", "2"}
    for o in outcomes:  # every answer is exactly its named version's, whichever role it had
        assert o.probabilities is not None
        np.testing.assert_allclose(o.probabilities, expected[str(o.version)], rtol=1e-9)
    state = deployments.read(NAME)
    assert (state.production, state.canary) == ("2", None)
