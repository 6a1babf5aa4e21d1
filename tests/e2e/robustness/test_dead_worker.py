"""A worker SIGKILLed under load takes its live gauges with it: once the load stops, the server
reports nothing in flight and nothing queued (the dead worker's files would say otherwise). A
worker killed while the supervisor waits for its answer to a health check is replaced at once,
not when the check's 30 s run out."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.load import Load
from tests.helpers.marks import LOAD_SENSITIVE
from tests.helpers.promtext import total
from tests.helpers.support import Server, copy_registry, wait_all_workers_ready, worker_pids

pytestmark = [pytest.mark.e2e, LOAD_SENSITIVE]
IDLE_WITHIN_S = 10.0


def _live(text: str) -> tuple[float, float]:
    return total(text, "http_requests_inprogress"), total(text, "modelserve_queue_depth")


def _wait(what: str, check: object, timeout: float) -> float:
    assert callable(check)
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, f"not within {timeout} s: {what}"
        time.sleep(0.1)
    return time.monotonic() - start


def test_a_killed_workers_gauges_go_with_it(tmp_path: Path) -> None:
    registry = copy_registry(tmp_path / "models")
    metrics_dir = tmp_path / "metrics"
    env = {
        "MODELSERVE_POLL_INTERVAL_S": "0",
        "MODELSERVE_LOG_LEVEL": "warning",
        "MODELSERVE_PREDICTION_LOG_ENABLED": "false",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    meta = json.loads((registry / "breast-cancer" / "1" / "metadata.json").read_text())
    body = {"instances": [meta["example"]] * 256}
    with Server(registry, workdir=tmp_path, env=env, args=("--workers", "2")) as server:
        assert server.proc is not None
        server.wait_ready()
        _wait("two workers", lambda: len(worker_pids(server.proc.pid)) == 2, 60)
        workers = worker_pids(server.proc.pid)
        load = Load(server.url, body, threads=16)
        load.start()
        try:
            busiest = 0.0
            for _ in range(20):  # under load, requests are in flight in both workers
                busiest = max(busiest, _live(httpx.get(server.url + "/metrics").text)[0])
                time.sleep(0.05)
            victim = min(workers)
            os.kill(victim, signal.SIGKILL)
            replaced = _wait(
                "a replacement worker", lambda: worker_pids(server.proc.pid) - workers, 30
            )
            time.sleep(1.0)  # the load goes on against the survivor and the replacement
        finally:
            load.stop()
        assert busiest > 0, "the load never had a request in flight"
        assert any(o.status == 200 for o in load.outcomes)
        waited = _wait(
            "0 in flight and 0 queued",
            lambda: _live(httpx.get(server.url + "/metrics").text) == (0.0, 0.0),
            IDLE_WITHIN_S,
        )
        print(
            f"in flight up to {busiest:.0f}; replaced in {replaced:.2f} s; idle in {waited:.2f} s"
        )
        assert not list(metrics_dir.glob(f"gauge_live*_{victim}.db"))
        assert list(metrics_dir.glob(f"counter_{victim}.db")), "its counters are history: kept"


def test_a_worker_killed_during_its_health_check_is_replaced_at_once(tmp_path: Path) -> None:
    env = {"MODELSERVE_POLL_INTERVAL_S": "0", "MODELSERVE_LOG_LEVEL": "warning"}
    registry = copy_registry(tmp_path / "models")
    with Server(registry, workdir=tmp_path, env=env, args=("--workers", "2")) as server:
        assert server.proc is not None
        server.wait_ready()
        _wait("two workers", lambda: len(worker_pids(server.proc.pid)) == 2, 60)
        workers = worker_pids(server.proc.pid)
        victim = min(workers)
        os.kill(victim, signal.SIGSTOP)  # it cannot answer: the next check waits on it
        time.sleep(2.0)  # checks run every 0.5 s; one is now waiting (up to 30 s)
        os.kill(victim, signal.SIGKILL)
        replaced = _wait("a replacement worker", lambda: worker_pids(server.proc.pid) - workers, 10)
        print(f"replaced {replaced:.2f} s after the kill")
        wait_all_workers_ready(server.url)
        assert httpx.get(server.url + "/health/ready").status_code == 200
