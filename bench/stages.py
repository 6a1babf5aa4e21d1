"""Where a request's time goes: CPU microseconds per request in each stage, from a profile.

A sampling profiler (py-spy, from outside the process: the server runs no timing code at all)
records every thread of a modelserve process while wrk loads it. Each sample is given to the
first stage whose rule matches its stack, read from the innermost frame outwards (numpy called
by the drift counters is "metrics", by the scorer "model call"). A stage's share of the samples
times the process's CPU time per request (from /proc, over the same window) is its cost per
request; the rows add up to the whole process. The wall time a request spends waiting (in the
batcher's queue, the event loop, the socket) is its median latency less that CPU time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import WrkResult, wrk

Rule = Callable[[str, str], bool]  # (function, file) -> whether the frame belongs to the stage
SAMPLE_HZ = 250
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _in(*parts: str) -> Rule:
    return lambda function, file: any(part in file for part in parts)


def _named(*names: str) -> Rule:
    return lambda function, file: function in names


# Innermost match wins, so the narrow rules (a function) sit beside the broad ones (a file).
STAGES: list[tuple[str, Rule]] = [
    ("model call", _in("app/serving/onepass", "app/serving/tree", "sklearn/", "scipy/")),
    (
        "metrics (instrumentator, drift, counters)",
        _in(
            "prometheus_client/",
            "prometheus_fastapi_instrumentator/",
            "app/api/instrumentation",
            "app/serving/observer",
            "app/serving/drift",
            "app/serving/confidence",
            "app/serving/attribution",
            "app/metrics",
        ),
    ),
    ("access log, request id", _in("logging/", "app/logs")),
    ("log submit", _named("PredictionLog.submit")),
    ("prediction log writer (thread)", _in("app/monitoring/")),
    ("parse (body, JSON)", _in("app/api/codecs/body")),
    ("contract (rows to model input)", _in("app/serving/contract", "app/serving/typed")),
    ("contract (rows to model input)", _named("decode_instances", "model_input")),
    ("encode (JSON answer)", lambda f, file: "app/api/codecs" in file and "encode" in f),
    (
        "batcher, thread hand-off",
        _in(
            "app/serving/batching",
            "app/serving/inline",
            "concurrent/futures",
            "app/serving/runner",
            "threading.py",
        ),
    ),
    ("handler (route, ids, errors)", _in("app/api/", "app/serving/", "app/results")),
    ("HTTP server, event loop (uvicorn, uvloop)", _in("uvicorn/", "asyncio/", "httptools")),
    ("framework (FastAPI, Starlette middlewares)", _in("starlette/", "fastapi/")),
    ("other", lambda function, file: True),
]
STAGE_NAMES = list(dict.fromkeys(name for name, _ in STAGES))
# A sample whose innermost frame is this is the event loop's own C code (uvloop) running.
LOOP_FRAMES = ("Runner.run", "run_until_complete")


def classify(stack: list[str]) -> str:
    """The stage of one sample: its frames, outermost first (the first names the thread)."""
    frames = [m for m in (_FRAME.match(f) for f in stack[1:]) if m is not None]
    if not frames:
        return "other"
    if frames[-1]["function"] in LOOP_FRAMES:
        return "HTTP server, event loop (uvicorn, uvloop)"
    for match in reversed(frames):
        for name, rule in STAGES[:-1]:
            if rule(match["function"], match["file"]):
                return name
    return "other"


def samples(raw: str) -> Counter[str]:
    """Samples per stage in py-spy's raw (collapsed stack) output."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, n = line.rstrip().rpartition(" ")
        if stack and n.isdigit():
            counts[classify(stack.split(";"))] += int(n)
    return counts


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class StageProfile:
    load: WrkResult
    cpu_us: float  # the process's CPU time per request, every thread
    stage_us: dict[str, float]  # time holding the GIL per request, by stage

    @property
    def outside_gil_us(self) -> float:
        """CPU spent with the GIL released: native code (BLAS, tree loops), system calls."""
        return max(0.0, self.cpu_us - sum(self.stage_us.values()))

    @property
    def waiting_us(self) -> float:
        return max(0.0, self.load.p50_ms * 1000 - self.cpu_us)


def profiler() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def profile(pid: int, url: str, body: Path, connections: int, seconds: float) -> StageProfile:
    """wrk at ``connections`` for ``seconds`` while py-spy samples ``pid`` in the middle.

    Only the thread holding the GIL is sampled (``--gil``): Python runs one thread at a time,
    so samples per second are the share of time Python code (and uvloop, which holds the GIL
    while it works) runs; a thread idle in a wait, or the loop in ``epoll``, holds none.
    """
    spy = profiler()
    if spy is None:
        raise RuntimeError("py-spy is not installed (make install puts it in .venv)")
    result: list[WrkResult] = []
    load = threading.Thread(target=lambda: result.append(wrk(url, body, connections, seconds)))
    window = max(1, round(seconds - 2))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "raw.txt"
        load.start()
        time.sleep(1.0)  # wrk under way before the window opens
        cmd = [spy, "record", "--pid", str(pid), "--gil", "--threads", "--nonblocking"]
        cmd += ["-r", str(SAMPLE_HZ), "-d", str(window), "-f", "raw", "-o", str(out)]
        before = process_cpu_s(pid)
        subprocess.run(cmd, capture_output=True, check=True, timeout=window + 60)
        cpu = process_cpu_s(pid) - before
        load.join()
        counts = samples(out.read_text())
    requests = result[0].rps * window
    per_sample_us = 1e6 / SAMPLE_HZ / requests
    return StageProfile(
        result[0],
        cpu / requests * 1e6,
        {name: counts[name] * per_sample_us for name in STAGE_NAMES},
    )


def table(profiles: dict[str, StageProfile]) -> list[str]:
    """A markdown table: one column per run (e.g. "logistic c=1"), µs per request per stage."""
    runs = list(profiles)

    def row(label: str, cell: Callable[[StageProfile], str]) -> str:
        return f"| {label} | " + " | ".join(cell(profiles[r]) for r in runs) + " |"

    lines = ["| µs per request | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    for name in STAGE_NAMES:
        lines.append(
            f"| {name} | " + " | ".join(f"{profiles[r].stage_us[name]:.0f}" for r in runs) + " |"
        )
    lines += [
        row("native code, system calls (GIL released)", lambda p: f"{p.outside_gil_us:.0f}"),
        row("**all CPU of the process**", lambda p: f"**{p.cpu_us:.0f}**"),
        row("waiting (queue, loop, socket): p50 less CPU", lambda p: f"{p.waiting_us:.0f}"),
        row("req/s (p50 ms)", lambda p: f"{p.load.rps:,.0f} ({p.load.p50_ms:.2f})"),
    ]
    return lines


def stage_profiles(
    work: Path,
    registry: Path,
    bodies: dict[str, Path],
    seconds: float,
    repo: Path | None = None,
) -> dict[str, StageProfile]:
    """Each model at c=1 and c=64 on one modelserve process (``repo``: an earlier checkout)."""
    from bench.servers import BenchServer

    models = list(bodies)
    profiles: dict[str, StageProfile] = {}
    with BenchServer.start("modelserve", work, registry, models[0], repo=repo) as server:
        for model in models:
            url = server.url + server.predict_path(model)
            wrk(url, bodies[model], 16, 2)  # warm up
            for c in (1, 64):
                run = profile(server.proc.pid, url, bodies[model], c, seconds)
                profiles[f"{SHORT_NAMES.get(model, model)} c={c}"] = run
                print(f"stages {model} c={c}: {run.load}", file=sys.stderr)
    return profiles


def main() -> None:
    import argparse

    from bench.models import FOREST, LOGISTIC, MIXED, build_registry, example_records, example_rows
    from bench.servers import write_body, write_records_body

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per profiled run")
    parser.add_argument("--repo", type=Path, help="serve this checkout's code (the baseline)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelserve-stages-"))
    registry = build_registry(work / "models")
    body = write_body(work / "body.json", example_rows(registry, LOGISTIC, 1))
    mixed = write_records_body(work / "mixed.json", example_records(registry, MIXED, 1))
    bodies = {LOGISTIC: body, FOREST: body, MIXED: mixed}
    profiles = stage_profiles(work, registry.root, bodies, args.duration, args.repo)
    print("\n".join(table(profiles)))


SHORT_NAMES = {"breast-cancer": "logistic", "breast-cancer-forest": "forest", "mixed": "mixed"}

if __name__ == "__main__":
    main()
