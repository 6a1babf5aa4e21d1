"""``modelserve serve --workers 2`` with PROMETHEUS_MULTIPROC_DIR: /metrics sums every worker,
and shows each live worker's memory, CPU time and open files."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import ProcessCollector
from prometheus_client.mmap_dict import MmapedDict

from app.registry.store import Registry
from tests.helpers.promtext import samples, total
from tests.helpers.support import Server, wait_all_workers_ready, worker_pids

pytestmark = pytest.mark.e2e

MODEL = "breast-cancer"
ROUND = 24  # requests per round, each on a fresh connection
MAX_ROUNDS = 10
WORKER_GAUGES = (
    "modelserve_worker_resident_memory_bytes",
    "modelserve_worker_cpu_seconds",
    "modelserve_worker_open_fds",
    "modelserve_worker_start_time_seconds",
)
GONE_WITHIN_S = 5.0  # the survivor sweeps a dead worker's live gauges every second


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


def _per_worker(url: str) -> dict[str, dict[int, float]]:
    """Each modelserve_worker_* gauge's value by the pid label of its series."""
    text = httpx.get(url + "/metrics", timeout=30).text
    return {
        name: {int(s.labels["pid"]): s.value for s in samples(text, name)} for name in WORKER_GAUGES
    }


def _pids(url: str) -> set[int]:
    """The pids with any modelserve_worker_* series."""
    return {pid for values in _per_worker(url).values() for pid in values}


def _sampled(url: str) -> set[int]:
    """The pids whose resident memory has been set (not the 0 a starting worker shows)."""
    return {pid for pid, rss in _per_worker(url)[WORKER_GAUGES[0]].items() if rss > 0}


def _start_time(pid: int) -> float:
    """The process's start time as prometheus_client's process collector reads it."""
    collector = ProcessCollector(pid=lambda: pid, registry=None)
    (started,) = [
        s.value
        for family in collector.collect()
        for s in family.samples
        if s.name == "process_start_time_seconds"
    ]
    return started


def _wait_until(what: str, check: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, f"not within {timeout} s: {what}"
        time.sleep(0.1)
    return time.monotonic() - start


def test_each_worker_reports_its_memory_cpu_and_files_until_it_dies(
    registry_path: Path, tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    server = server_factory(
        registry_path,
        env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom-multiproc")},
        args=("--workers", "2"),
    )
    server.wait_ready(timeout=90)
    wait_all_workers_ready(server.url)
    assert server.proc is not None
    supervisor = server.proc.pid
    _wait_until("two workers", lambda: len(worker_pids(supervisor)) == 2, 60)
    workers = worker_pids(supervisor)
    # Each worker samples itself as its app starts: both are ready, so both have sampled.
    _wait_until("both workers' gauges", lambda: _sampled(server.url) == workers, 30)

    values = _per_worker(server.url)
    for name in WORKER_GAUGES:
        assert set(values[name]) == workers, (name, values[name], workers)
    for pid in workers:
        assert 50e6 < values["modelserve_worker_resident_memory_bytes"][pid] < 2e9, values
        assert values["modelserve_worker_cpu_seconds"][pid] > 0, values
        assert values["modelserve_worker_open_fds"][pid] > 0, values
        # The series labelled pid really is that process: its start time, read from /proc.
        started = _start_time(pid)
        assert values["modelserve_worker_start_time_seconds"][pid] == pytest.approx(started)

    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    gone = _wait_until(
        "the killed worker's series gone", lambda: victim not in _pids(server.url), GONE_WITHIN_S
    )
    _wait_until("a replacement worker", lambda: len(worker_pids(supervisor) - workers) == 1, 60)
    (replacement,) = worker_pids(supervisor) - workers
    survivor = max(workers)
    # A worker's series exist (at 0) from its import of app.metrics; its app sets them.
    _wait_until(
        "the replacement's sampled series",
        lambda: _sampled(server.url) == {survivor, replacement},
        60,
    )
    values = _per_worker(server.url)
    assert set(values["modelserve_worker_cpu_seconds"]) == {survivor, replacement}, values
    assert 50e6 < values["modelserve_worker_resident_memory_bytes"][replacement] < 2e9, values
    print(f"killed worker {victim}: its series gone {gone:.2f} s later; replaced by {replacement}")
