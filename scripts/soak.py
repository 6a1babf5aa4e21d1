"""Soak: a real server under mixed traffic (predictions, feedback, reloads) for a while.

Prints request and error counts, p99 latency and the server's resident memory at the start
(after a warm-up) and at the end. Exits 1 on any error or on RSS growth above 10 %.

    python -m scripts.soak --duration 600
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from tests.helpers.hostile import MB, rss_bytes
from tests.helpers.load import Load, p99_ms
from tests.helpers.support import Server, copy_registry

TOKEN = secrets.token_urlsafe(16)
MAX_GROWTH = 0.10


def _feedback(url: str, load: Load, stop: threading.Event, counts: dict[str, int]) -> None:
    """Label acknowledged predictions a moment after they were made (each id once)."""
    sent = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            done = [o for o in load.outcomes[sent : sent + 50] if o.status == 200]
            sent = min(len(load.outcomes), sent + 50)
            for o in done[:5]:
                response = client.post(
                    "/feedback", json={"prediction_id": o.ids[0], "label": sent % 2}
                )
                counts["feedback_ok" if response.status_code == 200 else "feedback_errors"] += 1
                if response.status_code != 200:
                    print(f"feedback error {response.status_code}: {response.text[:200]}")
            stop.wait(0.1)


def _reloads(url: str, stop: threading.Event, counts: dict[str, int], every: float) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.wait(every):
            response = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
            counts["reload_ok" if response.status_code == 200 else "reload_errors"] += 1


def soak(duration: float, warmup: float, threads: int) -> int:
    with tempfile.TemporaryDirectory(prefix="modelserve-soak-") as tmp:
        registry = copy_registry(Path(tmp) / "models")
        env = {
            "MODELSERVE_ADMIN_TOKEN": TOKEN,
            "MODELSERVE_PREDICTION_LOG": str(Path(tmp) / "predictions.db"),
            "MODELSERVE_LOG_LEVEL": "warning",
        }
        with Server(registry, workdir=Path(tmp), env=env) as server:
            server.wait_ready()
            assert server.proc is not None
            meta = json.loads((registry / "breast-cancer" / "1" / "metadata.json").read_text())
            load = Load(server.url, {"instances": [meta["example"]] * 4}, threads=threads)
            load.start()
            stop = threading.Event()
            counts = dict.fromkeys(
                ("feedback_ok", "feedback_errors", "reload_ok", "reload_errors"), 0
            )
            helpers = [
                threading.Thread(target=_feedback, args=(server.url, load, stop, counts)),
                threading.Thread(target=_reloads, args=(server.url, stop, counts, 5.0)),
            ]
            for helper in helpers:
                helper.start()
            time.sleep(warmup)
            rss_start = rss_bytes(server.proc.pid)
            warm = len(load.outcomes)
            time.sleep(duration)
            rss_end = rss_bytes(server.proc.pid)
            stop.set()
            outcomes = load.stop()
            for helper in helpers:
                helper.join(60)
            code = server.stop()
    measured = outcomes[warm:]
    errors = [o for o in outcomes if o.status != 200]
    growth = (rss_end - rss_start) / rss_start
    print(f"duration_s={duration:.0f} (after {warmup:.0f} s warm-up) threads={threads}")
    print(
        f"predict_requests={len(outcomes)} predict_errors={len(errors)} "
        f"rate={len(measured) / duration:.0f}/s p99_ms={p99_ms(measured):.1f}"
    )
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    print(
        f"rss_start_mb={rss_start / MB:.1f} rss_end_mb={rss_end / MB:.1f} "
        f"growth={100 * growth:.1f}% server_exit={code}"
    )
    for o in errors[:5]:
        print(f"error: {o.status} {o.error}")
    failed = errors or counts["feedback_errors"] or counts["reload_errors"] or code != 0
    return 1 if failed or growth > MAX_GROWTH else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    sys.exit(soak(args.duration, args.warmup, args.threads))


if __name__ == "__main__":
    main()
