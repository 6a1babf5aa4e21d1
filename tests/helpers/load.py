"""A bounded closed-loop load generator on loopback: N threads, one connection each, every
request recorded with its start/end time, status and the version that answered."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class Outcome:
    start: float
    end: float
    status: int  # 0: transport error
    version: str | None
    error: str | None
    ids: tuple[str, ...] = ()
    probabilities: list[list[float]] | None = None


@dataclass
class Load:
    url: str
    body: dict[str, Any]
    threads: int = 4
    path: str = "/predict"
    pause_s: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    response = client.post(self.path, json=self.body)
                    end = time.monotonic()
                    if response.status_code == 200:
                        payload = response.json()
                        outcome = Outcome(
                            start,
                            end,
                            200,
                            payload["version"],
                            None,
                            tuple(payload["prediction_ids"]),
                            payload.get("probabilities"),
                        )
                    else:
                        outcome = Outcome(start, end, response.status_code, None, response.text)
                except httpx.HTTPError as exc:
                    outcome = Outcome(start, time.monotonic(), 0, None, repr(exc))
                with self._lock:
                    self.outcomes.append(outcome)
                if self.pause_s:
                    time.sleep(self.pause_s)

    def start(self) -> Load:
        self._workers = [
            threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for worker in self._workers:
            worker.join(60)
        with self._lock:
            return list(self.outcomes)

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        """Until ``count`` requests have completed (whatever their outcome)."""
        wait_until(lambda: len(self.outcomes) >= count, timeout, f"{count} requests")


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def p99_ms(outcomes: list[Outcome]) -> float:
    latencies = sorted(o.end - o.start for o in outcomes if o.status == 200)
    if not latencies:
        return float("nan")
    return 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
