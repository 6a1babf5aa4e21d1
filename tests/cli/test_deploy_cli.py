"""``promote --canary``, ``rollback`` ending a canary, and ``shadow``: the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.lifecycle import NAME, train_quick
from tests.helpers.support import run_cli

pytestmark = pytest.mark.slow  # the modelserve CLI as subprocesses


def _doc(registry: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((registry / NAME / "aliases.json").read_text())
    return loaded


def test_canary_promote_and_rollback_round_trip(registry_path: Path) -> None:
    train_quick(registry_path, **{"estimator.params.C": 0.02})
    reg = ("--registry", str(registry_path))

    started = run_cli("promote", NAME, "2", "--canary", "10", *reg)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == f"{NAME}: canary 2 takes 10% of production 1's requests"
    assert _doc(registry_path)["weights"] == {"canary": 10.0}

    ended = run_cli("rollback", NAME, *reg)
    assert ended.returncode == 0, ended.stderr
    assert ended.stdout.strip() == f"{NAME}: canary 2 ended (rollback); production stays 1"
    assert "canary" not in _doc(registry_path)["aliases"]  # type: ignore[operator]

    run_cli("promote", NAME, "2", "--canary", "25", *reg)
    finished = run_cli("promote", NAME, "2", *reg)
    assert finished.stdout.strip() == f"{NAME}: production 1 -> 2"
    assert _doc(registry_path)["aliases"] == {"production": "2"}
    # With no canary left, rollback walks production back as before.
    back = run_cli("rollback", NAME, *reg)
    assert back.stdout.strip() == f"{NAME}: production 2 -> 1 (rollback)"


def test_bad_canary_requests_are_one_line_errors(registry_path: Path) -> None:
    reg = ("--registry", str(registry_path))
    for args, message in (
        (("promote", NAME, "1", "--canary", "10"), "already production"),
        (("promote", NAME, "1", "--canary", "150"), "percentage in (0, 100]"),
        (("promote", NAME, "7", "--canary", "10"), "no version '7'"),
        (("shadow", NAME), "give a VERSION to shadow, or --off"),
    ):
        done = run_cli(*args, *reg)
        assert done.returncode == 1, (args, done.stdout)
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_shadow_on_and_off(registry_path: Path) -> None:
    train_quick(registry_path, **{"estimator.params.C": 0.02})
    reg = ("--registry", str(registry_path))
    on = run_cli("shadow", NAME, "2", *reg)
    assert on.returncode == 0, on.stderr
    assert _doc(registry_path)["aliases"] == {"production": "1", "shadow": "2"}
    off = run_cli("shadow", NAME, "--off", *reg)
    assert off.stdout.strip() == f"{NAME}: shadow 2 stopped"
    assert _doc(registry_path)["aliases"] == {"production": "1"}
