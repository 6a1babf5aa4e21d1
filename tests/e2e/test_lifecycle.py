"""The model lifecycle end to end: the real CLI against a real ``modelserve serve`` process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.registry.store import Registry
from tests.helpers.lifecycle import (
    DEFAULT_SPEC,
    NAME,
    breast_cancer_csv,
    metric_value,
    served_version,
    snapshot,
    train_quick,
    wait_for_version,
)
from tests.helpers.support import MODELSERVE, Server, run_cli

pytestmark = pytest.mark.e2e


def all_workers_serve(url: str, version: str, *, old: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new_info = metric_value(url, "modelserve_model_info", model=NAME, version=version)
        old_info = metric_value(url, "modelserve_model_info", model=NAME, version=old)
        if new_info == 1.0 and old_info == 0.0:
            return True
        time.sleep(0.2)
    return False


def test_train_promote_hot_swap_and_rollback_without_restart(
    registry_path: Path, server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = server_factory(
        registry_path, env={"MODELSERVE_POLL_INTERVAL_S": "1"}, args=("--workers", "2")
    )
    server.wait_ready()
    pid = server.proc.pid if server.proc else None
    assert served_version(server.url) == "1"

    report = tmp_path / "report.json"
    summary = tmp_path / "summary.md"
    trained = run_cli(
        "train", str(DEFAULT_SPEC), "--registry", str(registry_path),
        "--report", str(report), "--summary", str(summary),
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "registered breast-cancer version 2, not promoted" in trained.stdout
    assert "| accuracy (primary) |" in trained.stdout
    doc = json.loads(report.read_text())
    assert doc["status"] == "registered" and doc["version"] == "2"
    assert doc["comparison"]["production_version"] == "1"
    assert "production (v1)" in summary.read_text()
    assert (registry_path / NAME / "2" / "MODEL_CARD.md").is_file()
    assert served_version(server.url) == "1"  # registering alone changes nothing served

    promoted = run_cli("promote", NAME, "2", "--registry", str(registry_path))
    assert promoted.returncode == 0, promoted.stderr
    assert wait_for_version(server.url, "2", timeout=10) < 10
    # model_info is "livemax" across workers: version 1 reads 0 only once every worker swapped.
    assert all_workers_serve(server.url, "2", old="1", timeout=10)

    listed = run_cli("versions", NAME, "--registry", str(registry_path))
    assert listed.returncode == 0
    assert [line.split("\t")[:2] for line in listed.stdout.splitlines()] == [
        ["1", "-"],
        ["2", "production"],
    ]

    rolled = run_cli("rollback", NAME, "--registry", str(registry_path))
    assert rolled.returncode == 0, rolled.stderr
    assert "production 2 -> 1" in rolled.stdout
    assert wait_for_version(server.url, "1", timeout=10) < 10
    assert all_workers_serve(server.url, "1", old="2", timeout=10)
    assert server.proc is not None and server.proc.pid == pid and server.proc.poll() is None
    history = Registry(registry_path).alias_history(NAME)
    assert [(h["version"], h["reason"]) for h in history][-2:] == [
        ("2", "promote"),
        ("1", "rollback"),
    ]
    # No admin token configured: the admin routes do not exist.
    assert httpx.post(f"{server.url}/admin/reload", timeout=10).status_code == 404


def test_tampered_version_is_refused_and_failed_reload_keeps_old_version(
    registry_path: Path, server_factory: Callable[..., Server]
) -> None:
    token = "s3cret-admin-token"
    server = server_factory(
        registry_path,
        env={"MODELSERVE_POLL_INTERVAL_S": "0", "MODELSERVE_ADMIN_TOKEN": token},
    )
    assert train_quick(registry_path).version == "2"
    assert train_quick(registry_path).version == "3"
    server.wait_ready()
    reload_url = f"{server.url}/admin/reload"

    no_token = httpx.post(reload_url, timeout=10)
    assert no_token.status_code == 401
    assert no_token.json()["error"]["field"] == "Authorization"
    wrong = httpx.post(reload_url, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 403

    artifact3 = registry_path / NAME / "3" / "model.joblib"
    artifact3.write_bytes(artifact3.read_bytes() + b"tampered")
    before = snapshot(registry_path)
    refused = run_cli("promote", NAME, "3", "--registry", str(registry_path))
    assert refused.returncode != 0
    assert "sha256" in refused.stderr and "not promoted" in refused.stderr
    assert snapshot(registry_path) == before

    # A valid promote, then the artifact changes on disk before the server loads it.
    assert run_cli("promote", NAME, "2", "--registry", str(registry_path)).returncode == 0
    artifact2 = registry_path / NAME / "2" / "model.joblib"
    artifact2.write_bytes(artifact2.read_bytes() + b"tampered")
    auth = {"Authorization": f"Bearer {token}"}
    reloaded = httpx.post(reload_url, headers=auth, timeout=30)
    assert reloaded.status_code == 200
    body = reloaded.json()
    assert body["serving"][NAME] == "1"
    [swap] = [s for s in body["swaps"] if s["model"] == NAME]
    assert swap["ok"] is False and swap["new_version"] == "2" and "sha256" in swap["error"]
    assert served_version(server.url) == "1"
    assert metric_value(server.url, "modelserve_model_reload_failures_total", model=NAME) == 1.0

    verified = run_cli("verify", "--registry", str(registry_path))
    assert verified.returncode != 0
    assert "FAILED" in verified.stdout and "sha256" in verified.stdout


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (("--set", "gate.thresholds.accuracy=0.999"), 4, ["gate failed", "accuracy >= 0.999"]),
        (("--data", "nan"), 3, ["mean radius", "not_nullable"]),
        (("--data", "schema"), 3, ["mean texture", "expected column is missing", "texture"]),
        (("--data", "shifted"), 3, ["worst area", "in_range"]),
    ],
    ids=["gate", "nan-column", "wrong-schema", "shifted-range"],
)
def test_failing_candidates_exit_non_zero_and_leave_registry_unchanged(
    registry_path: Path, tmp_path: Path, args: tuple[str, str], code: int, expected: list[str]
) -> None:
    changes = {
        "nan": lambda f: f.assign(**{"mean radius": float("nan")}),
        "schema": lambda f: f.rename(columns={"mean texture": "texture"}),
        "shifted": lambda f: f.assign(**{"worst area": f["worst area"] * 100}),
    }
    if args[0] == "--data":
        csv = breast_cancer_csv(tmp_path / "data.csv", changes[args[1]])
        args = ("--set", f"data.source={csv}")
    before = snapshot(registry_path)
    report = tmp_path / "report.json"
    result = run_cli(
        "train", str(DEFAULT_SPEC), "--registry", str(registry_path), "--report", str(report),
        "--set", "split.cv_folds=0", *args,
    )  # fmt: skip
    assert result.returncode == code, result.stdout + result.stderr
    for text in expected:
        assert text in result.stdout + result.stderr
    assert "nothing registered" in result.stderr
    assert snapshot(registry_path) == before
    assert json.loads(report.read_text())["status"] in ("gate_failed", "validation_failed")


def test_concurrent_promotes_and_kill_during_register_leave_registry_consistent(
    registry_path: Path, tmp_path: Path
) -> None:
    registry = Registry(registry_path)
    assert train_quick(registry_path).version == "2"
    history_before = len(registry.alias_history(NAME))
    procs = [
        subprocess.Popen(
            [MODELSERVE, "promote", NAME, str(1 + i % 2), "--registry", str(registry_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    history = registry.alias_history(NAME)
    assert len(history) == history_before + 4  # no promote lost its update
    assert registry.aliases(NAME)["production"] in ("1", "2")

    # A slow-to-write forest gives a window to SIGKILL the CLI while its version is staged.
    model_dir = registry_path / NAME
    forest = (
        "--set", "estimator.class=sklearn.ensemble.RandomForestClassifier",
        "--set", "estimator.params={n_estimators: 300}",
        "--set", "split.cv_folds=0",
    )  # fmt: skip
    caught = False
    for _ in range(3):
        proc = subprocess.Popen(
            [MODELSERVE, "train", str(DEFAULT_SPEC), "--registry", str(registry_path), *forest],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if any(name.startswith(".tmp-") for name in os.listdir(model_dir)):
                os.kill(proc.pid, signal.SIGKILL)
                caught = True
                break
        proc.wait(timeout=60)
        if caught:
            break
    assert caught, "never saw the register staging directory"
    visible = registry.versions(NAME)
    assert all((model_dir / v / "metadata.json").is_file() for v in visible)
    assert run_cli("verify", "--registry", str(registry_path)).returncode == 0
    # The next register sweeps the dead writer's staging and takes the next number.
    next_version = str(max(int(v) for v in visible) + 1)
    assert train_quick(registry_path).version == next_version
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".tmp-")]
    verified = run_cli("verify", NAME, "--registry", str(registry_path))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.count("\tok") == len(visible) + 1
