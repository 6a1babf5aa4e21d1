"""Start the benchmarked servers on loopback, drive them with wrk, and check overload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.models import FOREST, LOGISTIC, MIXED
from tests.helpers.support import free_port, stop_process

BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
OVERLOAD_CONNECTIONS = 512
OVERLOAD_QUEUE = 256  # ~0.2 s of forest work: past that, callers get 503 instead of waiting
OVERLOAD_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    socket_errors: int
    non_2xx: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    p90_ms: float = 0.0  # what post.lua prints; other load tools' results may lack it

    @classmethod
    def parse(cls, stdout: str) -> WrkResult:
        """The result bench/post.lua prints on its ``WRK_JSON`` line."""
        line = next((ln for ln in stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no WRK_JSON line: {stdout[-1000:]}")
        raw = json.loads(line.removeprefix("WRK_JSON "))
        return cls(
            requests=raw["requests"],
            seconds=raw["duration_us"] / 1e6,
            socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
            non_2xx=raw["status"],
            p50_ms=raw["p50_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000,
            max_ms=raw["max_us"] / 1000,
            p90_ms=raw["p90_us"] / 1000,
        )

    @property
    def failed(self) -> int:
        return self.non_2xx + self.socket_errors

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        return (
            f"{self.rps:,.0f} req/s p50 {self.p50_ms:.2f} ms p99 {self.p99_ms:.1f} ms "
            f"max {self.max_ms:.0f} ms non-2xx {self.non_2xx} socket errors {self.socket_errors}"
        )


def cell(r: WrkResult | None) -> str:
    """A table cell: req/s (p50 ms / p99 ms), or "-" for a run that did not happen."""
    if r is None:
        return "-"
    return f"{r.rps:,.0f} ({r.p50_ms:.2f} / {r.p99_ms:.1f})"


def write_body(path: Path, rows: Any) -> Path:
    path.write_bytes(orjson.dumps({"instances": rows.tolist()}))
    return path


def write_records_body(path: Path, records: list[dict[str, Any]]) -> Path:
    """``{"instances": [{"feature": value, ...}]}``: rows as objects keyed by feature name."""
    path.write_bytes(orjson.dumps({"instances": records}))
    return path


def wrk(
    url: str,
    body: Path,
    connections: int,
    seconds: float,
    timeout_s: float = 30,
    headers: tuple[str, ...] = (),
) -> WrkResult:
    """wrk POSTing ``body`` (JSON unless ``headers`` give the content type, then one header)."""
    threads = min(2, connections)
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={max(1, round(timeout_s))}s",
    ]
    cmd += ["-s", str(BENCH / "post.lua"), url, "--", str(body), *headers]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=True)
    return WrkResult.parse(out.stdout)


@dataclass
class BenchServer:
    kind: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(
        cls,
        kind: str,
        work: Path,
        registry: Path,
        model: str,
        env: dict[str, str] | None = None,
        repo: Path | None = None,
    ) -> BenchServer:
        """``repo``: serve modelserve from that checkout (an earlier commit's code) instead."""
        port = free_port()
        full_env = {**os.environ, **(env or {})}
        if kind == "baseline":
            version = json.loads((registry / model / "aliases.json").read_text())["aliases"]
            full_env["BASELINE_MODEL"] = str(
                registry / model / version["production"] / "model.joblib"
            )
            # The mixed-type model gets the DataFrame-per-request baseline.
            app = "baseline_mixed_app:app" if model == MIXED else "baseline_app:app"
            cmd = [str(BIN / "uvicorn"), "--app-dir", str(BENCH), app]
            cmd += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
            ready = "/health"
        else:
            workers = "2" if kind == "modelserve-w2" else "1"
            cmd = [str(BIN / "modelserve")] if repo is None else [sys.executable, "-m", "app.cli"]
            cmd += ["serve", "--registry", str(registry)]
            cmd += ["--port", str(port), "--workers", workers, "--model", LOGISTIC]
            full_env.setdefault("MODELSERVE_POLL_INTERVAL_S", "0")
            full_env.setdefault("MODELSERVE_SHUTDOWN_DRAIN_S", "0")  # stopped at once when done
            ready = "/health/ready"
        log_path = work / f"{kind}-{model}-{port}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=repo
            )
        server = cls(kind, f"http://127.0.0.1:{port}", proc, log_path)
        server.wait(ready)
        return server

    def predict_path(self, model: str) -> str:
        if self.kind == "baseline" or model == LOGISTIC:
            return "/predict"
        return f"/v1/models/{model}:predict"

    def wait(self, path: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.kind} not ready after {timeout}s")

    def __enter__(self) -> BenchServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stop_process(self.proc, timeout=30)


def fresh_c64(
    work: Path,
    registry: Path,
    model: str,
    body: Path,
    seconds: float,
    warmup: float,
    kind: str = "modelserve",
    env: dict[str, str] | None = None,
    repo: Path | None = None,
) -> WrkResult:
    """One c=64 run on a fresh one-process server of ``kind``, warmed at c=16 first."""
    with BenchServer.start(kind, work, registry, model, env, repo) as server:
        url = server.url + server.predict_path(model)
        wrk(url, body, 16, warmup)
        return wrk(url, body, 64, seconds)


@dataclass
class Probe:
    """Sequential requests beside the load: their status and latency, one by one."""

    url: str
    body: bytes | None
    samples: list[tuple[int, float]] = field(default_factory=list)
    failures: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=OVERLOAD_TIMEOUT_S * 2) as client:
            while not self.stop.is_set():
                start = time.perf_counter()
                try:
                    if self.body is None:
                        status = client.get(self.url).status_code
                    else:
                        headers = {"Content-Type": "application/json"}
                        status = client.post(
                            self.url, content=self.body, headers=headers
                        ).status_code
                except httpx.HTTPError:
                    self.failures += 1
                    continue
                self.samples.append((status, (time.perf_counter() - start) * 1000))
                self.stop.wait(0.02)

    def latencies(self, status: int) -> list[float]:
        return sorted(ms for s, ms in self.samples if s == status)


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


@dataclass
class OverloadResult:
    load: WrkResult
    live: Probe
    predict: Probe

    @property
    def ok(self) -> bool:
        live_bad = self.live.failures + sum(1 for s, _ in self.live.samples if s != 200)
        return (
            self.load.max_ms < OVERLOAD_TIMEOUT_S * 1000
            and self.load.socket_errors == 0
            and live_bad == 0
            and len(self.live.samples) > 0
        )

    def report(self) -> list[str]:
        live = self.live.latencies(200)
        ok, shed = self.predict.latencies(200), self.predict.latencies(503)
        live_bad = self.live.failures + sum(1 for s, _ in self.live.samples if s != 200)
        return [
            f"Overload: wrk c={OVERLOAD_CONNECTIONS} on the forest, modelserve 1 process, "
            f"MODELSERVE_QUEUE_SIZE={OVERLOAD_QUEUE}, MODELSERVE_REQUEST_TIMEOUT_S="
            f"{OVERLOAD_TIMEOUT_S:g}:",
            "",
            f"- wrk: {self.load}",
            f"- answered 200: {self.load.requests - self.load.non_2xx:,}, "
            f"non-2xx (503 overloaded): {self.load.non_2xx:,}; "
            f"slowest request {self.load.max_ms:.0f} ms (timeout {OVERLOAD_TIMEOUT_S:g} s)",
            f"- probe beside the load: {len(ok)} × 200 (p50 {_pct(ok, 0.5):.0f} ms, max "
            f"{_pct(ok, 1):.0f} ms), {len(shed)} × 503 (p50 {_pct(shed, 0.5):.1f} ms, "
            f"max {_pct(shed, 1):.1f} ms)",
            f"- /health/live: {len(live)} × 200 (p50 {_pct(live, 0.5):.1f} ms, max "
            f"{_pct(live, 1):.1f} ms), {live_bad} failures",
        ]


def overload_check(work: Path, registry: Path, body: Path, seconds: float) -> OverloadResult:
    env = {
        "MODELSERVE_QUEUE_SIZE": str(OVERLOAD_QUEUE),
        "MODELSERVE_REQUEST_TIMEOUT_S": str(OVERLOAD_TIMEOUT_S),
    }
    with BenchServer.start("modelserve", work, registry, LOGISTIC, env) as srv:
        url = srv.url + srv.predict_path(FOREST)
        live = Probe(srv.url + "/health/live", None)
        predict = Probe(url, body.read_bytes())
        threads = [threading.Thread(target=p.run, daemon=True) for p in (live, predict)]
        for t in threads:
            t.start()
        load = wrk(url, body, OVERLOAD_CONNECTIONS, seconds, timeout_s=OVERLOAD_TIMEOUT_S * 3)
        for p in (live, predict):
            p.stop.set()
        for t in threads:
            t.join(OVERLOAD_TIMEOUT_S * 3)
        return OverloadResult(load, live, predict)
