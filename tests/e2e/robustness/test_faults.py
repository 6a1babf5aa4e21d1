"""Faults against a real server: bad new versions, a read-only registry, a full log disk.

Each fault is real: bytes flipped or files deleted in the registry the server polls, a
read-only bind mount (root) or write bits removed (other users), a tmpfs filled to ENOSPC.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.registry.store import Registry
from tests.helpers.lifecycle import NAME, metric_value, served_version
from tests.helpers.mounts import can_mount, fill, read_only_view, tiny_tmpfs
from tests.helpers.support import Server, run_cli

pytestmark = pytest.mark.e2e

TOKEN = "faults-admin-token"
POLL = {"MODELSERVE_POLL_INTERVAL_S": "1", "MODELSERVE_ADMIN_TOKEN": TOKEN}


def _wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not seen within {timeout}s")


def _reload_failures(url: str) -> float:
    return metric_value(url, "modelserve_model_reload_failures_total", model=NAME) or 0.0


def _failures_above(url: str, count: float) -> bool:
    return _reload_failures(url) > count


def _logged(server: Server, text: str) -> bool:
    return text in server.logs()


def _point_production_at(registry_path: Path, version: str) -> None:
    """Move the alias the way any registry writer does (atomic rename), without verifying."""
    path = registry_path / NAME / "aliases.json"
    doc = json.loads(path.read_text())
    doc["aliases"]["production"] = version
    tmp = path.with_name(".aliases.json.fault.tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


def _new_version(registry: Registry) -> str:
    """A valid new version: version 1's estimator registered again."""
    loaded = registry.load(NAME, "1")
    fields = loaded.metadata.model_dump(exclude={"name", "version", "artifact", "format", "sha256"})
    return registry.register(NAME, loaded.estimator, fields).version


def test_corrupt_or_missing_new_version_keeps_the_old_one_serving(
    registry_path: Path, server_factory: Callable[..., Server]
) -> None:
    registry = Registry(registry_path)
    server = server_factory(registry_path, env=POLL)
    server.wait_ready()
    corrupt, deleted, no_artifact = (_new_version(registry) for _ in range(3))

    artifact = registry_path / NAME / corrupt / "model.joblib"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    shutil.rmtree(registry_path / NAME / deleted)
    (registry_path / NAME / no_artifact / "model.joblib").unlink()

    faults = [
        (corrupt, "does not match the registry record"),
        (deleted, f"has no version '{deleted}'"),
        (no_artifact, "artifact file is missing"),
    ]
    counted = 0.0
    for version, reason in faults:
        _point_production_at(registry_path, version)
        _wait_for(f"reload failure for {version}", partial(_failures_above, server.url, counted))
        counted += 1
        assert served_version(server.url) == "1"
        assert httpx.get(f"{server.url}/health/ready", timeout=10).status_code == 200
        _wait_for(f"{reason!r} in the log", partial(_logged, server, reason))
        logs = server.logs()
        assert f"loading {NAME} version {version} failed" in logs
        assert "still serving version 1" in logs

        # An explicit reload retries the bad version: refused again, counted again, reported.
        reloaded = httpx.post(
            f"{server.url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        ).json()
        counted += 1
        assert reloaded["serving"] == {NAME: "1"}
        [swap] = reloaded["swaps"]
        assert (swap["new_version"], swap["ok"]) == (version, False) and reason in swap["error"]
        assert _reload_failures(server.url) == counted  # polling did not recount it

    fixed = _new_version(registry)
    assert run_cli("promote", NAME, fixed, "--registry", str(registry_path)).returncode == 0
    _wait_for(f"version {fixed} served", lambda: served_version(server.url) == fixed)
    assert _reload_failures(server.url) == counted


def test_read_only_registry_serves_and_refuses_changes_clearly(
    registry_path: Path, tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    spare = _new_version(Registry(registry_path))
    with read_only_view(registry_path, tmp_path / "ro" / "models") as ro:
        server = server_factory(ro, env=POLL)
        server.wait_ready()
        reg = ("--registry", str(ro))
        results = {
            "promote": run_cli("promote", NAME, spare, *reg),
            "rollback": run_cli("rollback", NAME, *reg),
            "train": run_cli(
                "train",
                str(ro / NAME / "train.yaml"),
                *reg,
                "--set",
                "split.cv_folds=0",
            ),
        }
        for command, result in results.items():
            assert result.returncode == 1, (command, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr, (command, result.stderr)
            last = result.stderr.strip().splitlines()[-1]
            assert last.startswith("error: ") and "cannot update the registry at" in last, last
            assert ("Read-only file system" in last) or ("Permission denied" in last), last
        assert run_cli("verify", *reg).returncode == 0  # reading needs no write access

        # The running server neither notices nor minds: it only ever reads the registry.
        reloaded = httpx.post(
            f"{server.url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )
        assert reloaded.status_code == 200 and reloaded.json()["serving"] == {NAME: "1"}
        for _ in range(20):
            assert served_version(server.url) == "1"
        assert Registry(ro).aliases(NAME) == {"production": "1"}
        server.stop()


@pytest.mark.skipif(
    not can_mount(), reason="a size-limited tmpfs needs root (mount -t tmpfs); nothing else fills"
)
def test_full_log_disk_keeps_predicting_and_never_acknowledges_unstored_feedback(
    registry_path: Path, tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    example = Registry(registry_path).metadata(NAME, "1").example
    with tiny_tmpfs(tmp_path / "logfs", size_kib=1024) as logfs:
        db = logfs / "predictions.db"
        env = {"MODELSERVE_PREDICTION_LOG": str(db), "MODELSERVE_PREDICTION_LOG_FLUSH_MS": "50"}
        server = server_factory(registry_path, env=env)
        server.wait_ready()

        def predict() -> str:
            response = httpx.post(
                f"{server.url}/predict", json={"instances": [example]}, timeout=10
            )
            assert response.status_code == 200, response.text
            prediction_id: str = response.json()["prediction_ids"][0]
            return prediction_id

        def feedback(prediction_id: str) -> httpx.Response:
            body = {"prediction_id": prediction_id, "label": 0}
            return httpx.post(f"{server.url}/feedback", json=body, timeout=30)

        def failures(operation: str) -> float:
            labels = {"operation": operation}
            return metric_value(server.url, "modelserve_log_write_failures_total", **labels) or 0.0

        logged = [predict() for _ in range(3)]
        assert feedback(logged[0]).status_code == 200  # the log works before the disk fills

        def rows_written() -> bool:
            with sqlite3.connect(db) as conn:
                (count,) = conn.execute("SELECT COUNT(*) FROM predictions").fetchone()
            return int(count) >= len(logged)

        # The writer flushes every 50 ms: fill the disk only once these rows are on it.
        _wait_for("the logged predictions written", rows_written)

        filled = fill(logfs)
        during = [predict() for _ in range(20)]  # predictions never wait on the log
        _wait_for("prediction rows counted as lost", lambda: failures("predictions") >= 20)
        refused = feedback(logged[1])
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["type"] == "log_unavailable"
        assert "accepted" not in refused.json()
        assert failures("feedback") == 1
        assert "feedback not stored" in server.logs()
        assert "rows not written" in server.logs()

        (logfs / "filler").unlink()  # space again: the refused label was really not stored
        assert feedback(logged[1]).status_code == 200
        assert feedback(during[0]).status_code == 404  # its row was lost, not silently kept
        after = predict()
        assert feedback(after).status_code == 200
        lost = failures("predictions")
        server.stop()
        with sqlite3.connect(db) as conn:
            labels = dict(conn.execute("SELECT prediction_id, COUNT(*) FROM feedback GROUP BY 1"))
        assert labels == {logged[0]: 1, logged[1]: 1, after: 1}
        print(f"\nlog disk filled with {filled} bytes; {lost:.0f} prediction rows counted lost")
