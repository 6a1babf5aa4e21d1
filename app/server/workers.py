"""Forget the live gauges of workers that died without saying so (SIGKILL, OOM killer).

prometheus_client keeps each worker's values in ``<kind>_<mode>_<pid>.db`` files under
``PROMETHEUS_MULTIPROC_DIR``. Counters of a dead worker must stay (they are what happened), but
its in-flight and queue-depth gauges (``livesum``) would be summed forever; that is what
``mark_process_dead`` removes. uvicorn's supervisor restarts a dead worker but offers no hook,
so every worker sweeps, as it starts and then every ``SWEEP_INTERVAL_S``: a survivor clears a
dead worker's gauges within about a second, long before its replacement has started (a new
worker takes seconds to import and load on a busy host).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

from prometheus_client import multiprocess

log = logging.getLogger(__name__)

_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")  # livesum, liveall, livemax...
SWEEP_INTERVAL_S = 1.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not ours to judge
    try:  # a zombie (killed, not yet reaped by its parent) is dead too
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def sweep_dead_workers(directory: str | None = None) -> list[int]:
    """Mark every process with live-gauge files that no longer runs as dead; returns their pids."""
    path = directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path or not os.path.isdir(path):
        return []
    pids = {int(m[1]) for name in os.listdir(path) if (m := _LIVE_GAUGE_FILE.fullmatch(name))}
    dead = sorted(pid for pid in pids if pid != os.getpid() and not _alive(pid))
    for pid in dead:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    if dead:
        log.info("removed the live gauges of exited workers", extra={"pids": dead})
    return dead


def start_sweeping(interval_s: float = SWEEP_INTERVAL_S) -> Callable[[], None] | None:
    """Sweep now and then every ``interval_s`` in a daemon thread; returns how to stop it.

    None without a multiprocess directory (one process: nothing to sweep).
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return None
    stopped = threading.Event()

    def sweep() -> None:
        while True:
            try:
                sweep_dead_workers(directory)
            except OSError as exc:  # a file swept by another worker at the same moment
                log.debug("sweeping %s: %s", directory, exc)
            if stopped.wait(interval_s):
                return

    thread = threading.Thread(target=sweep, name="metrics-sweeper", daemon=True)
    thread.start()

    def stop() -> None:
        stopped.set()
        thread.join(5)

    return stop
