"""The sweep forgets the live gauges of processes that exited, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.server.workers import sweep_dead_workers


def _exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_the_live_gauges_of_exited_processes_are_removed(tmp_path: Path) -> None:
    dead, alive = _exited_pid(), os.getpid()
    kept = [f"counter_{dead}.db", f"histogram_{dead}.db", f"gauge_max_{dead}.db"]
    removed = [f"gauge_livesum_{dead}.db", f"gauge_livemax_{dead}.db", f"gauge_liveall_{dead}.db"]
    ours = [f"gauge_livesum_{alive}.db", f"counter_{alive}.db"]
    for name in kept + removed + ours:
        (tmp_path / name).write_bytes(b"")
    assert sweep_dead_workers(str(tmp_path)) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ours)
    assert sweep_dead_workers(str(tmp_path)) == []  # once: its counters are no reason


def test_no_directory_is_nothing_to_do(tmp_path: Path) -> None:
    assert sweep_dead_workers(str(tmp_path / "absent")) == []
