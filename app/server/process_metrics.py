"""Each server worker's memory, CPU time and open files as the ``modelserve_worker_*`` gauges.

prometheus_client's ``process_*`` collector reads the process that answers the scrape, so it
is left out under ``PROMETHEUS_MULTIPROC_DIR``: with several workers nothing showed what each
one uses. Every worker process therefore reads itself with that same collector (unregistered:
read here, never exposed twice) when its first app starts and then every
``SAMPLE_INTERVAL_S``, into ``liveall`` gauges: one series per worker (a ``pid`` label), gone
with the worker (``server/workers.py`` sweeps a dead pid's live files). A starting worker's
series read 0 from its import of ``app.metrics`` until its app starts (its imports, seconds).
In one process they have no ``pid`` label and stand beside the standard ``process_*`` families.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from prometheus_client import Gauge, ProcessCollector

from app.metrics import WORKER_CPU, WORKER_OPEN_FDS, WORKER_RESIDENT_MEMORY, WORKER_START_TIME

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 5.0
# ProcessCollector's sample names -> the gauge each one sets.
GAUGES: dict[str, Gauge] = {
    "process_resident_memory_bytes": WORKER_RESIDENT_MEMORY,
    "process_cpu_seconds_total": WORKER_CPU,
    "process_open_fds": WORKER_OPEN_FDS,
    "process_start_time_seconds": WORKER_START_TIME,
}

_lock = threading.Lock()
# (pid, token) of this process's sampler: a forked child has none; a replaced token ends its loop.
_sampler: tuple[int, object] | None = None


def read_process(collector: ProcessCollector | None = None) -> dict[str, float]:
    """This process's values by ProcessCollector sample name (none where /proc is missing)."""
    collector = collector or ProcessCollector(registry=None)
    return {
        sample.name: sample.value
        for family in collector.collect()
        for sample in family.samples
        if sample.name in GAUGES
    }


def sample(collector: ProcessCollector | None = None) -> dict[str, float]:
    """Read this process and set its gauges; returns what was read."""
    values = read_process(collector)
    for name, value in values.items():
        GAUGES[name].set(value)
    return values


def start_sampling(interval_s: float = SAMPLE_INTERVAL_S) -> bool:
    """Sample now, then every ``interval_s`` in a daemon thread; True if this call started it.

    Once per process, for as long as it lives: the values are the process's, whichever of its
    apps (tests build many) asked, and a worker's last app stops only as the process exits.
    """
    global _sampler
    with _lock:
        if _sampler is not None and _sampler[0] == os.getpid():
            return False
        mine = _sampler = (os.getpid(), object())
    collector = ProcessCollector(registry=None)
    sample(collector)  # at once: the first scrape after start-up sees this worker

    def run() -> None:
        while True:
            time.sleep(interval_s)
            if _sampler is not mine:
                return
            try:
                sample(collector)
            except (OSError, ValueError) as exc:  # a /proc read or a metrics file write
                log.debug("sampling process metrics: %s", exc)

    threading.Thread(target=run, name="process-metrics", daemon=True).start()
    return True
