"""Each process reads its own memory, CPU time and open files into the modelserve_worker_* gauges
(tests/e2e/test_multiprocess.py: one series per worker under ``--workers 2``, gone with it)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from app.server import process_metrics
from app.server.process_metrics import read_process, sample, start_sampling
from tests.helpers.promtext import samples

RSS = "modelserve_worker_resident_memory_bytes"
CPU = "modelserve_worker_cpu_seconds"
FDS = "modelserve_worker_open_fds"
STARTED = "modelserve_worker_start_time_seconds"


class _Fixed:
    """Stands in for ProcessCollector: what it would read, fixed."""

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("process_resident_memory_bytes", "", value=123e6)
        yield CounterMetricFamily("process_cpu_seconds", "", value=4.5)
        yield GaugeMetricFamily("process_open_fds", "", value=17)
        yield GaugeMetricFamily("process_start_time_seconds", "", value=1.7e9)
        yield GaugeMetricFamily("process_max_fds", "", value=1024)  # not one of ours


def _burn_cpu(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_read_process_is_this_process_as_proc_tells_it() -> None:
    values = read_process()
    assert set(values) == set(process_metrics.GAUGES)
    page = resource.getpagesize()
    with open("/proc/self/statm") as statm:
        rss = int(statm.read().split()[1]) * page
    assert values["process_resident_memory_bytes"] == pytest.approx(rss, rel=0.2)
    used = os.times()
    cpu = used.user + used.system
    assert 0 < values["process_cpu_seconds_total"] <= cpu + 0.05
    assert values["process_cpu_seconds_total"] == pytest.approx(cpu, abs=0.5)
    assert values["process_open_fds"] == pytest.approx(len(os.listdir("/proc/self/fd")), abs=3)
    assert time.time() - 86400 < values["process_start_time_seconds"] <= time.time()


def test_sample_sets_each_gauge_from_its_process_value() -> None:
    assert sample(_Fixed()) == {  # type: ignore[arg-type]
        "process_resident_memory_bytes": 123e6,
        "process_cpu_seconds_total": 4.5,
        "process_open_fds": 17,
        "process_start_time_seconds": 1.7e9,
    }
    # One process (no PROMETHEUS_MULTIPROC_DIR): no pid label. This process's sampler thread,
    # started by another test's app, may set the real values between the call and the reads
    # (it did once in CI): the call and its reads are tried again, at most three times.
    fixed = [123e6, 4.5, 17, 1.7e9]
    for _ in range(3):
        sample(_Fixed())  # type: ignore[arg-type]
        got = [REGISTRY.get_sample_value(name) for name in (RSS, CPU, FDS, STARTED)]
        if got == fixed:
            break
    assert got == fixed
    sample()  # back to the truth for whoever reads them next


def test_sampling_runs_once_per_process_and_follows_the_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start_sampling()  # whatever started it before (an app of another test): it runs now
    assert start_sampling() is False
    assert [t.name for t in threading.enumerate()].count("process-metrics") == 1
    # A forked child inherits the flag but not the thread: a sampler of another pid is none.
    monkeypatch.setattr(process_metrics, "_sampler", (-1, object()))
    assert start_sampling(interval_s=0.05) is True
    assert start_sampling(interval_s=0.05) is False
    assert [t.name for t in threading.enumerate()].count("process-metrics") == 2
    before = REGISTRY.get_sample_value(CPU)
    assert before is not None
    _burn_cpu(0.3)
    deadline = time.monotonic() + 5
    while (REGISTRY.get_sample_value(CPU) or 0) < before + 0.2:
        assert time.monotonic() < deadline, "the gauge did not follow the CPU used"
        time.sleep(0.05)
    monkeypatch.undo()  # the earlier sampler again: the test's own one stops
    deadline = time.monotonic() + 5
    while [t.name for t in threading.enumerate()].count("process-metrics") != 1:
        assert time.monotonic() < deadline, "the replaced sampler went on"
        time.sleep(0.05)


def test_one_process_serves_the_worker_gauges_beside_process_star(client: TestClient) -> None:
    text = client.get("/metrics").text
    for name in (RSS, CPU, FDS, STARTED):
        (only,) = samples(text, name)
        assert only.labels == {}, only
        assert only.value > 0, only
    (rss,) = samples(text, RSS)
    (standard,) = samples(text, "process_resident_memory_bytes")
    assert rss.value == pytest.approx(standard.value, rel=0.5)
    (started,) = samples(text, "process_start_time_seconds")
    assert samples(text, STARTED)[0].value == pytest.approx(started.value)


def test_importing_the_metrics_makes_the_multiprocess_directory(tmp_path: Path) -> None:
    """The worker gauges open their file at import: a directory yet to be made (the image's
    /tmp/metrics on an empty tmpfs) is made, not a crash of ``modelserve serve``."""
    directory = tmp_path / "not-yet" / "metrics"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import app.metrics"], env=env, stderr=subprocess.PIPE
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert [p.name for p in directory.iterdir()] == [f"gauge_liveall_{proc.pid}.db"]
