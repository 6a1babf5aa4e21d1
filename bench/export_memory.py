"""Export of a large prediction log: peak RSS and wall time of ``modelserve export``.

Fills a SQLite prediction log with N rows of the default model (30 features, half of them
labelled) through the server's own backend, then runs the real CLI as a subprocess and reads
its peak RSS from the kernel (``ru_maxrss`` of the waited child). Run at two sizes, the RSS
should stay flat: the export streams batches and never holds the table.

    .venv/bin/python -m bench.export_memory --rows 1000000 100000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.monitoring.records import FeedbackRow  # noqa: E402
from app.monitoring.sqlite import SqliteBackend  # noqa: E402

MODELSERVE = str(ROOT / ".venv" / "bin" / "modelserve")
CHUNK = 20_000


def fill(db: Path, rows: int, features: int) -> float:
    start = time.perf_counter()
    backend = SqliteBackend(db)
    rng = np.random.default_rng(0)
    now = time.time() - rows / 1000
    try:
        for offset in range(0, rows, CHUNK):
            n = min(CHUNK, rows - offset)
            X = rng.normal(10, 3, (n, features)).round(4)
            ids = [uuid.uuid4().hex for _ in range(n)]
            backend.write_predictions(
                [
                    (pid, now + (offset + i) / 1000, "breast-cancer", "1",
                     json.dumps(X[i].tolist()), '{"prediction": 1, "probabilities": [0.2, 0.8]}')
                    for i, pid in enumerate(ids)
                ]
            )  # fmt: skip
            backend.add_feedback([FeedbackRow(pid, now, "1", "correct", None) for pid in ids[::2]])
    finally:
        backend.close()
    return time.perf_counter() - start


def export(registry: Path, db: Path, out: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) of the export process, and its output line."""
    env = {**os.environ, "MODELSERVE_DATABASE_URL": f"sqlite:///{db}"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [MODELSERVE, "export", "breast-cancer", "--registry", str(registry), "--output", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    text = proc.stdout.read() if proc.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"export failed: {text}")
    return elapsed, usage.ru_maxrss / 1024, text.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 100_000])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelserve-export-bench-"))
    try:
        registry = work / "models"
        shutil.copytree(ROOT / "models", registry)
        print("| rows | fill s | export s | rows/s | peak RSS MiB | output MiB |")
        print("|---:|---:|---:|---:|---:|---:|")
        for rows in args.rows:
            db, out = work / f"log-{rows}.db", work / f"export-{rows}.csv"
            filled = fill(db, rows, features=30)
            elapsed, rss, line = export(registry, db, out)
            size = out.stat().st_size / 2**20
            print(f"| {rows:,} | {filled:.0f} | {elapsed:.1f} | {rows / elapsed:,.0f} | "
                  f"{rss:.0f} | {size:.0f} |", flush=True)  # fmt: skip
            print(f"<!-- {line} -->", flush=True)
            db.unlink()
            out.unlink()
        _, _, usage = os.wait4(
            subprocess.Popen([MODELSERVE, "--help"], stdout=subprocess.DEVNULL).pid, 0
        )
        print(f"\n`modelserve --help` alone peaks at {usage.ru_maxrss / 1024:.0f} MiB.")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
