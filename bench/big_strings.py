"""Distinct 1 MB strings on every route: answer sizes and each worker's RSS (issue #26).

Starts ``modelserve serve`` (the churn model of ``tests.helpers.mixed`` as the default model,
gRPC on) with 1 and then 2 workers, sends N requests (3,000 by default) from 8 client threads,
each carrying its own 1 MB string, cycling through the kinds of ``tests.helpers.big_strings``
(a string feature's value, an unknown feature name, a numeric feature's value, v1 positional
rows, OIP v2 JSON and binary BYTES tensors and a 1 MB tensor name, /invocations JSON and CSV,
/feedback label and id, gRPC ModelInfer with typed and raw BYTES); then prints per worker its
RSS before (after a warm-up on every kind), its peak during the run (sampled every 20 ms from
/proc/PID/status) and after (5 s idle), the largest answer, the statuses per kind and any
answer that is not a 4xx of at most 8 KB naming its field. Exit 1 unless every answer is one,
the server still answers ready and no worker's peak grew by more than 64 MB.

    .venv/bin/python -m bench.big_strings                  # 3,000 requests, 1 then 2 workers
    .venv/bin/python -m bench.big_strings --requests 300 --workers 2 --kinds "unknown key"
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.big_strings import ALL_KINDS, MB, ROW, Load, Sampler, mixed_server  # noqa: E402
from tests.helpers.hostile import rss_bytes  # noqa: E402
from tests.helpers.mixed import register_churn  # noqa: E402
from tests.helpers.support import Server, copy_registry, worker_pids  # noqa: E402

MAX_GROWTH_MB = 64


def server_workers(server: Server, workers: int) -> list[int]:
    """The server process itself (one worker), else its spawned worker children."""
    assert server.proc is not None
    if workers == 1:
        return [server.proc.pid]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = worker_pids(server.proc.pid)
        if len(pids) == workers:
            return sorted(pids)
        time.sleep(0.2)
    raise RuntimeError(f"expected {workers} worker processes")


def prediction_id(url: str) -> str:
    answer = httpx.post(url + "/predict", json={"instances": [ROW]}, timeout=30)
    answer.raise_for_status()
    pid: str = answer.json()["prediction_ids"][0]
    return pid


def run(registry: Path, work: Path, workers: int, requests: int, kinds: list[str]) -> bool:
    server, grpc_port = mixed_server(registry, work, workers, MODELSERVE_LOG_LEVEL="warning")
    with server:
        server.wait_ready(120)
        pids = server_workers(server, workers)
        load = Load(server.url, grpc_port, prediction_id(server.url))
        load.run(50 * workers * len(ALL_KINDS), ALL_KINDS, size=64)  # warm-up: small strings
        time.sleep(1)
        sampler = Sampler(pids)
        sampler.start()
        start = time.monotonic()
        outcomes = load.run(requests, kinds)
        elapsed = time.monotonic() - start
        growth = sampler.stop()
        time.sleep(5)
        after = {p: rss_bytes(p) for p in pids}
        alive = server.proc is not None and server.proc.poll() is None
        ready = alive and httpx.get(server.url + "/health/ready", timeout=10).status_code == 200

    print(f"\n{workers} worker(s), {requests} requests in {elapsed:.1f} s ({load.clients} clients)")
    print(f"{'worker':>8} {'before MB':>10} {'peak MB':>9} {'growth MB':>10} {'after MB':>9}")
    for p in pids:
        before, peak = sampler.before[p] / MB, sampler.peak[p] / MB
        print(f"{p:>8} {before:>10.1f} {peak:>9.1f} {growth[p]:>10.1f} {after[p] / MB:>9.1f}")
    print(f"largest answer: {outcomes.largest[0]} bytes ({outcomes.largest[1]})")
    print("\n".join(outcomes.table()))
    for failure in outcomes.failures:
        print("  FAILED", failure)
    worst = max(growth.values())
    ok = not outcomes.failures and ready and worst <= MAX_GROWTH_MB
    print(
        f"still serving: {ready}; peak growth {worst:.1f} MB per worker "
        f"(at most {MAX_GROWTH_MB}): {'met' if ok else 'NOT MET'}"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--kinds", nargs="*", choices=ALL_KINDS, default=list(ALL_KINDS), metavar="KIND",
        help=f"only these kinds (default all: {', '.join(ALL_KINDS)})",
    )  # fmt: skip
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelserve-big-strings-"))
    try:
        registry = copy_registry(work / "models")
        register_churn(registry, work)
        results = [run(registry, work, w, args.requests, args.kinds) for w in args.workers]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
