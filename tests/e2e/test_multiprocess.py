"""``modelserve serve --workers 2`` with PROMETHEUS_MULTIPROC_DIR: /metrics sums every worker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from app.registry.store import Registry
from tests.helpers.promtext import total
from tests.helpers.support import Server, wait_all_workers_ready

pytestmark = pytest.mark.e2e

MODEL = "breast-cancer"
ROUND = 24  # requests per round, each on a fresh connection
MAX_ROUNDS = 10


def _served_per_worker(metrics_dir: Path) -> dict[str, float]:
    """Instances each worker process predicted, read from its own metrics file."""
    per_pid: dict[str, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = path.stem.removeprefix("counter_")
        # prometheus_client's own reader of a worker's file (untyped upstream).
        entries = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
        for key, value, _ts, _pos in entries:
            if '"modelserve_predictions_total"' in key:
                per_pid[pid] = per_pid.get(pid, 0.0) + value
    return per_pid


def _post_fresh(url: str, row: list[Any]) -> int:
    # A new client per request: a new TCP connection, so the kernel picks a worker each time.
    with httpx.Client(timeout=30) as client:
        return client.post(url + "/predict", json={"instances": [row]}).status_code


def test_two_workers_aggregate_counters(
    registry_path: Path, tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    metrics_dir = tmp_path / "prom-multiproc"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale")  # emptied at start
    server = server_factory(
        registry_path,
        env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "MODELSERVE_POLL_INTERVAL_S": "0"},
        args=("--workers", "2"),
    )
    server.wait_ready(timeout=90)
    wait_all_workers_ready(server.url)

    row = Registry(registry_path).metadata(MODEL, "1").example
    sent = 0
    # Sequential, so each request is exactly one model call; rounds until both workers served.
    for _ in range(MAX_ROUNDS):
        statuses = [_post_fresh(server.url, row) for _ in range(ROUND)]
        assert statuses == [200] * ROUND
        sent += ROUND
        if len([v for v in _served_per_worker(metrics_dir).values() if v > 0]) >= 2:
            break
    per_worker = _served_per_worker(metrics_dir)
    assert len([v for v in per_worker.values() if v > 0]) == 2, per_worker
    assert "999999" not in per_worker

    text = httpx.get(server.url + "/metrics", timeout=30).text
    assert total(text, "http_requests_total", {"handler": "/predict", "status": "200"}) == sent
    assert total(text, "modelserve_predictions_total", {"model": MODEL}) == sent
    assert total(text, "modelserve_batch_size_sum", {"model": MODEL}) == sent
    assert total(text, "modelserve_batch_size_count", {"model": MODEL}) == sent
    assert total(text, "modelserve_inference_duration_seconds_count", {"model": MODEL}) == sent
    # Gauges combine sensibly: one model_info series at 1, not one per worker summed to 2.
    sha = Registry(registry_path).metadata(MODEL, "1").sha256
    assert total(text, "modelserve_model_info", {"model": MODEL, "sha256": sha}) == 1
