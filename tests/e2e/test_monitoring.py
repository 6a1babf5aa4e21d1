"""Feedback and the prediction log against real servers: workers, replicas, SIGKILL, simulate."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sklearn.datasets import load_breast_cancer

from tests.helpers.monitoring import metric_sum
from tests.helpers.support import Server, run_cli

pytestmark = pytest.mark.e2e
ROWS = load_breast_cancer().data


def _predict_each(url: str, n: int) -> list[tuple[str, int]]:
    """n single-row predictions, each on a new connection (so the kernel spreads workers)."""
    out = []
    for i in range(n):
        resp = httpx.post(f"{url}/predict", json={"instances": [ROWS[i].tolist()]}, timeout=30)
        assert resp.status_code == 200, resp.text
        out.append((resp.json()["prediction_ids"][0], resp.json()["predictions"][0]))
    return out


def _feedback(url: str, pid: str, label: int) -> httpx.Response:
    return httpx.post(f"{url}/feedback", json={"prediction_id": pid, "label": label}, timeout=30)


def test_two_workers_and_a_replica_share_the_log_and_counters_add_up(
    server_factory: Callable[..., Server], registry_path: Path
) -> None:
    workers = server_factory(registry_path, args=("--workers", "2"))
    workers.wait_ready()
    made = _predict_each(workers.url, 30)
    # Labels right away, to whichever worker accepts the connection: a worker that did not
    # make the prediction finds it once its sibling's writer has committed.
    for k, (pid, predicted) in enumerate(made[:20]):
        label = predicted if k % 4 else 1 - predicted  # every 4th is wrong: 5 of 20
        assert _feedback(workers.url, pid, label).status_code == 200
    metrics = httpx.get(f"{workers.url}/metrics", timeout=30).text
    assert metric_sum(metrics, "modelserve_feedback_total", outcome="correct") == 15
    assert metric_sum(metrics, "modelserve_feedback_total", outcome="incorrect") == 5
    assert metric_sum(metrics, "modelserve_predictions_total") == 30

    # A separate server process on the same registry (a replica on this host) sees the log.
    replica = server_factory(registry_path)
    replica.wait_ready()
    for pid, predicted in made[20:]:
        assert _feedback(replica.url, pid, predicted).status_code == 200
    assert _feedback(replica.url, made[0][0], made[0][1]).status_code == 409
    db = registry_path.parent / "data" / "predictions.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM feedback").fetchone()[0] == 30
        assert conn.execute("SELECT count(*) FROM predictions").fetchone()[0] == 30


def test_acknowledged_feedback_survives_sigkill(
    server_factory: Callable[..., Server], registry_path: Path
) -> None:
    server = server_factory(registry_path)
    server.wait_ready()
    made = _predict_each(server.url, 25)
    acked = []
    for pid, predicted in made:
        if _feedback(server.url, pid, predicted).status_code == 200:
            acked.append(pid)
    assert len(acked) == 25
    server.stop(signal.SIGKILL)  # no shutdown hook runs: only what was committed survives

    db = registry_path.parent / "data" / "predictions.db"
    with sqlite3.connect(db) as conn:
        stored = {r[0] for r in conn.execute("SELECT prediction_id FROM feedback")}
    assert set(acked) <= stored

    restarted = server_factory(registry_path)
    restarted.wait_ready()
    for pid in acked[:5]:
        again = _feedback(restarted.url, pid, 0)
        assert again.status_code == 409, again.text


def test_simulate_drives_predictions_and_feedback(
    server_factory: Callable[..., Server], registry_path: Path
) -> None:
    server = server_factory(registry_path)
    server.wait_ready()
    result = run_cli(
        "simulate",
        "--url",
        server.url,
        "--rate",
        "25",
        "--duration",
        "3",
        "--feedback-delay",
        "0.5",
        "--label-noise",
        "0.3",
        "--drift",
        "1.0",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "feedback" in result.stdout
    metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    predicted = metric_sum(metrics, "modelserve_predictions_total")
    labelled = metric_sum(metrics, "modelserve_feedback_total")
    assert predicted >= 50  # 75 planned; generous for a loaded machine
    assert labelled == predicted  # every answered prediction got its delayed label
    assert metric_sum(metrics, "modelserve_feedback_total", outcome="incorrect") > 0
    assert run_cli("simulate", "--url", "http://10.1.2.3:8000").returncode != 0  # loopback only
