"""The front door of ``make stack-test``: HAProxy's view of the replicas, and a stop under load.

HAProxy's own stats (``/stats;csv`` on its stats port) name each server slot of the
``server-template`` with the address DNS gave it, its state (UP, DOWN, MAINT once its record is
gone from Docker's DNS) and its session count; that is how a replica container is matched to
its slot and how the test shows the balancer stopped sending it traffic.
"""

from __future__ import annotations

import contextlib
import csv
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from scripts.stack_test_engine import run, wait_until

BACKEND = "modelserve"
# deploy/haproxy/haproxy.cfg: `inter 1s fall 2`, `timeout check 2s`. A replica that refuses
# connections is DOWN after two checks (about 2 s); one whose port still accepts while it
# drains, after two timed-out checks at worst: 2 * (1 + 2) s. One sampling step on top.
DOWN_WITHIN_S = 2 * (1 + 2) + 1
CONCURRENCY = 8
LOAD_BEFORE_S = 3.0
LOAD_AFTER_S = 8.0


@dataclass(frozen=True)
class Slot:
    name: str
    status: str  # UP, DOWN, MAINT, "DOWN 1/2" (going down), "UP 1/2"...
    addr: str  # "172.18.0.5:8000", "" before DNS filled the slot
    sessions: int  # stot: every session this slot was given
    current: int  # scur: sessions on it now


def slots(stats_url: str) -> dict[str, Slot]:
    """The backend's server slots as HAProxy's CSV stats report them."""
    text = httpx.get(f"{stats_url};csv", timeout=5).text
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    return {
        row["svname"]: Slot(
            row["svname"],
            row["status"],
            row.get("addr") or "",
            int(row["stot"] or 0),
            int(row["scur"] or 0),
        )
        for row in rows
        if row["pxname"] == BACKEND and row["svname"] not in ("FRONTEND", "BACKEND")
    }


def up_addresses(stats_url: str) -> dict[str, str]:
    """{ip: slot name} of the slots HAProxy has UP."""
    return {s.addr.rsplit(":", 1)[0]: s.name for s in slots(stats_url).values() if s.status == "UP"}


def container_ip(cid: str) -> str:
    return run(
        "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", cid
    ).stdout.strip()


def wait_up(stats_url: str, count: int, timeout: float) -> dict[str, str]:
    """Until exactly ``count`` slots are UP; {ip: slot}."""

    def enough() -> dict[str, str]:
        found = up_addresses(stats_url)
        return found if len(found) == count else {}

    found: dict[str, str] = wait_until(f"{count} servers UP in HAProxy", enough, timeout, every=0.5)
    return found


@dataclass
class Load:
    """``CONCURRENCY`` clients posting /predict back to back, each request timed."""

    url: str
    body: object
    done: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, outcome
    stopping: threading.Event = field(default_factory=threading.Event)

    def _client(self) -> None:
        with httpx.Client(timeout=15) as client:
            while not self.stopping.is_set():
                start = time.monotonic()
                try:
                    status = client.post(f"{self.url}/predict", json=self.body).status_code
                    outcome = "ok" if status == 200 else str(status)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                self.done.append((start, time.monotonic(), outcome))

    def run_around(self, action: Callable[[], None], before: float, after: float) -> float:
        """Load for ``before`` s, then ``action`` (its start time returned), then ``after`` s."""
        threads = [threading.Thread(target=self._client) for _ in range(CONCURRENCY)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(before)
            started = time.monotonic()
            action()
            time.sleep(max(0.0, started + after - time.monotonic()))
        finally:
            self.stopping.set()
            for thread in threads:
                thread.join(30)
        return started

    def failures(self) -> list[tuple[float, float, str]]:
        return [d for d in self.done if d[2] != "ok"]


def stop_under_load(api_url: str, stats_url: str, victim: str, body: object) -> list[str]:
    """``docker stop`` (SIGTERM) one replica while ``CONCURRENCY`` clients send predictions.

    It may cost at most the requests in flight on it; none once HAProxy has taken it out, which
    must happen within its health-check interval; its session count must not rise after that.
    """
    ip = container_ip(victim)
    (slot,) = [s for s in slots(stats_url).values() if s.addr.rsplit(":", 1)[0] == ip]
    assert slot.status == "UP", slot
    samples: list[tuple[float, Slot]] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            with contextlib.suppress(httpx.HTTPError, KeyError):
                samples.append((time.monotonic(), slots(stats_url)[slot.name]))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    stopped_in: list[float] = []

    def stop() -> None:
        begin = time.monotonic()
        run("docker", "stop", victim, timeout=60)  # SIGTERM, SIGKILL after the grace period
        stopped_in.append(time.monotonic() - begin)

    load = Load(api_url, body)
    try:
        sigterm = load.run_around(stop, LOAD_BEFORE_S, LOAD_AFTER_S)
    finally:
        sampling.set()
        sampler.join(10)

    in_flight = sum(1 for start, end, _ in load.done if start <= sigterm <= end)
    out = [(t, s) for t, s in samples if t >= sigterm and not s.status.startswith("UP")]
    assert out, f"{slot.name} never left UP: {samples[-3:]}"
    out_at, out_slot = out[0]
    down_after = out_at - sigterm
    assert down_after <= DOWN_WITHIN_S, (down_after, out_slot)
    later = [s.sessions for t, s in samples if t >= out_at]
    assert max(later) == out_slot.sessions, (out_slot, later)  # no session once out

    failures = load.failures()
    assert len(failures) <= CONCURRENCY, failures[:10]
    late = [f for f in failures if f[0] >= out_at]
    assert not late, f"failures after {slot.name} was out of the rotation: {late[:5]}"
    total = len(load.done)
    ok_after = sum(1 for d in load.done if d[0] >= out_at and d[2] == "ok")
    rate = total / (LOAD_BEFORE_S + LOAD_AFTER_S)
    slowest = max((end - start, start - sigterm) for start, end, _ in load.done)
    how = "its DNS record gone" if "MAINT" in out_slot.status else "failed health checks"
    return [
        f"c={CONCURRENCY} POST /predict: {total} requests (~{rate:.0f}/s), "
        f"{len(failures)} failed {sorted({f[2] for f in failures}) or ''}(at most "
        f"{CONCURRENCY} allowed; {in_flight} in flight over the three replicas at SIGTERM); "
        f"slowest {slowest[0]:.2f} s, sent {slowest[1]:+.1f} s from SIGTERM",
        f"docker stop {victim[:12]} ({ip}, HAProxy's {slot.name}): exited in "
        f"{stopped_in[0] if stopped_in else float('nan'):.1f} s; HAProxy had it "
        f"{out_slot.status} ({how}) {down_after:.1f} s after SIGTERM (bound {DOWN_WITHIN_S} s)",
        f"{slot.name} sessions: {slot.sessions} before the load, {out_slot.sessions} when "
        f"taken out, {later[-1]} at the end; {ok_after} requests after that, all answered 200",
    ]


def down_after_pause(stats_url: str, cid: str) -> str:
    """A paused replica (its port still accepts, nothing answers) goes DOWN through the
    health checks alone: its DNS record stays. Call right after ``docker pause``."""
    ip = container_ip(cid)
    paused = time.monotonic()

    def down() -> Slot | None:
        for slot in slots(stats_url).values():
            if slot.addr.rsplit(":", 1)[0] == ip and slot.status.startswith("DOWN"):
                return slot
        return None

    slot: Slot = wait_until(f"{ip} DOWN in HAProxy", down, DOWN_WITHIN_S, every=0.1)
    took = time.monotonic() - paused
    return f"HAProxy had {slot.name} ({ip}) {slot.status} {took:.1f} s after the pause"
