"""A full prediction-log disk for a minute under steady load (issue #26): a handful of log lines,
every lost row counted, and the log writing again once there is space, without a restart.

The disk is real: a 16 MiB tmpfs (root mounts it; the test skips otherwise) filled to ENOSPC
while a real ``modelserve serve`` answers a steady load, then freed. 16 MiB, not less: under
load SQLite's write-ahead log grows to about 4 MiB before its first checkpoint, and a smaller
disk would stay full after the filler is removed.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.registry.store import Registry
from tests.helpers.lifecycle import NAME, metric_value
from tests.helpers.load import Load, Outcome, wait_until
from tests.helpers.marks import LOAD_SENSITIVE
from tests.helpers.mounts import can_mount, fill, tiny_tmpfs
from tests.helpers.support import Server

pytestmark = [
    pytest.mark.e2e,
    LOAD_SENSITIVE,  # a minute of steady load: some 25,000 requests
    pytest.mark.skipif(
        not can_mount(),
        reason="a size-limited tmpfs needs root (mount -t tmpfs); nothing else fills",
    ),
]

OUTAGE_S = 60.0
ROWS_PER_REQUEST = 2
# A line of the server's log about the outage: the writes, the feedback, their recoveries.
FAILURE_LINE = re.compile(r"disk is full|not written|not stored|buffer full|recovered")


def _stored_ids(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM predictions")}


def _failures(url: str, operation: str) -> float:
    found = metric_value(url, "modelserve_log_write_failures_total", operation=operation)
    return found or 0.0


def _ids(outcomes: list[Outcome], keep: Callable[[Outcome], bool] = lambda o: True) -> set[str]:
    return {pid for o in outcomes if o.status == 200 and keep(o) for pid in o.ids}


def test_a_minute_of_full_disk_under_load_is_a_few_lines_and_every_lost_row_counted(
    registry_path: Path, tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    example = Registry(registry_path).metadata(NAME, "1").example
    with tiny_tmpfs(tmp_path / "logfs", size_kib=16 * 1024) as logfs:
        db = logfs / "predictions.db"
        server = server_factory(registry_path, env={"MODELSERVE_PREDICTION_LOG": str(db)})
        server.wait_ready()
        body = {"instances": [example] * ROWS_PER_REQUEST}
        load = Load(server.url, body, threads=4, pause_s=0.005).start()
        load.wait_for(200)
        wait_until(lambda: len(_stored_ids(db)) >= 200, 30, "rows in the log before the fault")
        labelled = sorted(_ids(list(load.outcomes)))[:200]  # logged: labels for them are stored

        filled = fill(logfs)
        full_at = time.monotonic()
        # Feedback while the disk is full: a label every second, each refused.
        refused: list[httpx.Response] = []

        def send_feedback() -> None:
            for pid in labelled[:40]:
                if time.monotonic() > full_at + OUTAGE_S - 5:
                    return
                body = {"prediction_id": pid, "label": 0}
                refused.append(httpx.post(f"{server.url}/feedback", json=body, timeout=30))
                time.sleep(1)

        feedback = threading.Thread(target=send_feedback)
        feedback.start()
        time.sleep(OUTAGE_S)
        feedback.join()
        (logfs / "filler").unlink()
        freed_at = time.monotonic()
        time.sleep(5)  # the log writes again: load answered after this is in it
        outcomes = load.stop()
        time.sleep(1)  # the last flushes

        # Every row answered is in the log or counted as lost, whichever flush it fell in.
        answered = _ids(outcomes)
        stored = _stored_ids(db)
        lost = answered - stored
        assert len(answered) == ROWS_PER_REQUEST * sum(o.status == 200 for o in outcomes)
        assert all(o.status == 200 for o in outcomes), {o.status for o in outcomes}
        assert _failures(server.url, "predictions") == len(lost) > 0
        assert _failures(server.url, "buffer_full") == 0
        # The lost rows are the outage's; the log wrote before it and writes again after it.
        assert _ids(outcomes, lambda o: o.end < full_at - 1) <= stored
        after = _ids(outcomes, lambda o: o.start > freed_at + 1)
        assert len(after) > 100 and after <= stored
        assert server.proc is not None and server.proc.poll() is None  # never restarted

        assert len(refused) >= 30
        assert {r.status_code for r in refused} == {503}, {r.text for r in refused}
        assert {r.json()["error"]["type"] for r in refused} == {"log_unavailable"}
        assert _failures(server.url, "feedback") == len(refused)
        # The refused labels were not stored: accepted now.
        again = httpx.post(
            f"{server.url}/feedback", json={"prediction_id": labelled[0], "label": 0}, timeout=30
        )
        assert again.status_code == 200, again.text

        logs = server.logs().splitlines()
        about = [line for line in logs if FAILURE_LINE.search(line)]
        writes = [line for line in about if "feedback" not in line]
        labels = [line for line in about if "feedback" in line]
        print(
            f"\nlog disk filled with {filled} bytes for {freed_at - full_at:.0f} s: "
            f"{len(outcomes)} requests, {len(lost)} of {len(answered)} rows lost and counted, "
            f"{len(refused)} labels refused; the log's lines about it:\n" + "\n".join(about)
        )
        assert 2 <= len(writes) <= 5, writes  # a start, a recovery, perhaps one a minute
        assert "prediction log: rows not written: " in writes[0]
        assert "prediction log: rows not written: recovered after " in writes[-1]
        # Every lost row is in a recovery line's total (one outage: one recovery line).
        totals = [int(n) for n in re.findall(r"recovered after (\d+) rows", "\n".join(writes))]
        assert sum(totals) == len(lost), totals
        assert len(labels) == 2, labels  # the first refusal and the label stored after
        assert "feedback not stored: " in labels[0]
        assert f"feedback not stored: recovered after {len(refused)} requests" in labels[1]
        server.stop()
