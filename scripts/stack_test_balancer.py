"""The front door of ``make stack-test``: HAProxy's view of the replicas, and a stop under load.

HAProxy's own stats (``/stats;csv`` on its stats port) name each server slot of the
``server-template`` with the address DNS gave it, its state (UP, DOWN, MAINT once its record is
gone from Docker's DNS) and its session count; that is how a replica container is matched to
its slot and how the test shows the balancer stopped sending it traffic.

The stop under load (``stop_under_load``) does not depend on Docker: the loopback miniature of
``tests/e2e/robustness/test_drain_haproxy.py`` runs it too, against ``modelserve serve``
processes behind a local HAProxy whose configuration is derived from the committed one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from app.config import Settings
from scripts.stack_test_engine import ROOT, run, wait_until

BACKEND = "modelserve"
HAPROXY_CFG = ROOT / "deploy/haproxy/haproxy.cfg"
# deploy/haproxy/haproxy.cfg: `inter 1s`, `fastinter 250ms`, `fall 2`, `timeout check 2s`. A
# replica that refuses connections, or one that answers 503 while it drains after SIGTERM, is
# DOWN after two checks: within inter + fastinter (about 1.3 s). One whose port accepts but
# answers nothing (paused), after two timed-out checks: within 1 + 2 + 0.25 + 2 s. One
# sampling step on top.
DOWN_WITHIN_S = 2 * (1 + 2) + 1
CONCURRENCY = 16
LOAD_BEFORE_S = 3.0
# What a replica does on SIGTERM: MODELSERVE_SHUTDOWN_DRAIN_S (the compose file leaves the
# default) of serving with /health/ready at 503, then it stops accepting and exits.
DRAIN_S = float(Settings.model_fields["shutdown_drain_s"].default)
LOAD_AFTER_S = DRAIN_S + 5.0  # through the drain, the exit and the slot's going MAINT
SLACK_S = 1.0  # check latency and the sampler's period, on a loaded host


def check_timing(cfg: str = "", backend: str = BACKEND) -> tuple[float, float, int]:
    """(inter, fastinter, fall) in seconds of ``backend``'s ``default-server`` line."""
    text = cfg or HAPROXY_CFG.read_text()
    section = text.split(f"\nbackend {backend}\n", 1)[1].split("\nbackend ", 1)[0]
    (line,) = [ln.split() for ln in section.splitlines() if ln.split()[:1] == ["default-server"]]

    def seconds(word: str) -> float:
        value = line[line.index(word) + 1]
        match = re.fullmatch(r"([\d.]+)(ms|s)?", value)
        assert match, (word, value)
        return float(match[1]) / (1000 if match[2] == "ms" else 1)

    return seconds("inter"), seconds("fastinter"), int(line[line.index("fall") + 1])


def out_within_s(cfg: str = "") -> float:
    """How soon HAProxy takes out a replica whose checks fail from now on (503 or refused)."""
    inter, fastinter, fall = check_timing(cfg)
    return inter + (fall - 1) * fastinter + SLACK_S


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
    """``concurrency`` clients posting /predict back to back, each request timed; an answer is
    ``ok`` only if it is a 200 holding exactly ``truth``, the model's own predictions."""

    url: str
    body: object
    truth: object
    concurrency: int = CONCURRENCY
    done: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, outcome
    stopping: threading.Event = field(default_factory=threading.Event)

    def _client(self) -> None:
        with httpx.Client(timeout=15) as client:
            while not self.stopping.is_set():
                start = time.monotonic()
                try:
                    response = client.post(f"{self.url}/predict", json=self.body)
                    if response.status_code != 200:
                        outcome = str(response.status_code)
                    elif response.json().get("predictions") != self.truth:
                        outcome = f"wrong answer {response.text[:200]}"
                    else:
                        outcome = "ok"
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                except ValueError:
                    outcome = "not JSON"
                self.done.append((start, time.monotonic(), outcome))

    def run_around(self, action: Callable[[], None], before: float, after: float) -> float:
        """Load for ``before`` s, then ``action`` (its start time returned), then until
        ``after`` s past that start (or ``action``'s end, if later)."""
        threads = [threading.Thread(target=self._client) for _ in range(self.concurrency)]
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


@dataclass(frozen=True)
class Stopped:
    """What stopping a replica came to: when it had exited, with which code, and how."""

    exited_at: float  # time.monotonic()
    code: int
    how: str


def stop_under_load(
    api_url: str,
    stats_url: str,
    slot_name: str,
    stop: Callable[[], Stopped],
    body: object,
    truth: object,
    drain_s: float = DRAIN_S,
) -> list[str]:
    """``stop`` (SIGTERM, then wait for the exit) the replica in ``slot_name`` while
    ``CONCURRENCY`` clients send predictions through the balancer.

    Not one request may fail or get another answer than ``truth``: the replica keeps serving
    through its drain (``drain_s``), HAProxy takes it out on its failing checks (DOWN, not
    MAINT: it is still running) well before the drain ends, and gives it no session after
    that; the replica exits 0, no sooner than its drain.
    """
    (slot,) = [s for s in slots(stats_url).values() if s.name == slot_name]
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
    stopped: list[Stopped] = []
    load = Load(api_url, body, truth)
    try:
        sigterm = load.run_around(lambda: stopped.append(stop()), LOAD_BEFORE_S, LOAD_AFTER_S)
    finally:
        sampling.set()
        sampler.join(10)

    (done,) = stopped
    failures = load.failures()
    assert not failures, f"{len(failures)} failed: {failures[:10]}"
    assert done.code == 0, done
    exit_s = done.exited_at - sigterm
    assert exit_s >= drain_s, f"exited {exit_s:.1f} s after SIGTERM, before its drain ended"
    out = [(t, s) for t, s in samples if t >= sigterm and not s.status.startswith("UP")]
    assert out, f"{slot.name} never left UP: {samples[-3:]}"
    out_at, out_slot = out[0]
    down_after = out_at - sigterm
    bound = min(out_within_s(), drain_s - SLACK_S)
    assert out_slot.status.startswith("DOWN"), out_slot  # by its checks, while it drained
    assert down_after <= bound, (down_after, bound, out_slot)
    later = [s.sessions for t, s in samples if t >= out_at]
    assert max(later) == out_slot.sessions, (out_slot, later)  # no session once out

    total = len(load.done)
    in_flight = sum(1 for start, end, _ in load.done if start <= sigterm <= end)
    draining = sum(1 for start, _, _ in load.done if sigterm <= start <= out_at)
    rate = total / (LOAD_BEFORE_S + LOAD_AFTER_S)
    slowest = max((end - start, start - sigterm) for start, end, _ in load.done)
    final = samples[-1][1].status if samples else "?"
    return [
        f"c={CONCURRENCY} POST /predict: {total} requests (~{rate:.0f}/s), 0 failed, every "
        f"answer the model's own {truth}; {in_flight} in flight at SIGTERM; slowest "
        f"{slowest[0]:.2f} s, sent {slowest[1]:+.1f} s from SIGTERM",
        f"{done.how}: exited {done.code} {exit_s:.1f} s after SIGTERM (drain {drain_s:g} s); "
        f"HAProxy had {slot.name} {out_slot.status} {down_after:.2f} s after SIGTERM "
        f"(bound {bound:.2f} s), {final} at the end",
        f"{slot.name} sessions: {slot.sessions} before the load, {out_slot.sessions} when taken "
        f"out, {later[-1]} at the end; {draining} requests sent between SIGTERM and then",
    ]


def slot_of(stats_url: str, cid: str) -> str:
    """The name of the server slot HAProxy filled with this container's address."""
    ip = container_ip(cid)
    (slot,) = [s for s in slots(stats_url).values() if s.addr.rsplit(":", 1)[0] == ip]
    return slot.name


def docker_stop(victim: str) -> Callable[[], Stopped]:
    """``docker stop``: SIGTERM (through the image's init), SIGKILL after the grace period."""

    def stop() -> Stopped:
        begin = time.monotonic()
        run("docker", "stop", victim, timeout=60)
        exited_at = time.monotonic()
        code = int(run("docker", "inspect", "-f", "{{.State.ExitCode}}", victim).stdout)
        return Stopped(exited_at, code, f"docker stop {victim[:12]} ({exited_at - begin:.1f} s)")

    return stop


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
