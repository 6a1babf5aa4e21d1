"""What explaining costs (issue #28, acceptance 4): ``/predict`` with attribution monitoring at
its default sampling rate against off, and ``:explain`` itself.

Two ``modelserve serve`` processes (one worker each) on the bench registry
(``bench/models.py``: the default logistic model, a RandomForest(200), the mixed pipeline), one
with ``MODELSERVE_ATTRIBUTION_SAMPLE_RATE`` at its default and one with 0, are both started and
loaded by turns, never together: wrk at c=64 POSTs a one-row body to ``/predict`` in runs of
alternating order (on, off, off, on, ...), each after two idle seconds, so a slow drift of the
machine and the last run's leftovers land on both sides alike; first for the logistic model
(cheap explanations), then, on a new pair of servers, for the forest (TreeSHAP of 200 trees).
The rows each run sampled are read from the first server's ``/metrics``. Then
``POST /v1/models/{name}:explain`` with one row (the numeric models' shared example, the mixed
model's first training row as an object) at c=1 and c=16 for each model, after one request
that builds its explainer and a warm-up. Prints a markdown table.

    .venv/bin/python bench/explain.py [--duration 8] [--pairs 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.config import Settings
from bench.models import FOREST, LOGISTIC, MIXED, build_registry, example_records, example_rows
from bench.servers import BenchServer, WrkResult, write_body, write_records_body, wrk

PREDICT_CONNECTIONS = 64
EXPLAIN_CONNECTIONS = (1, 16)
SETTLE_S = 2.0  # idle before a run: the last run's log rows written, its sampled rows explained
MODELS = {LOGISTIC: "LogisticRegression", FOREST: "RandomForest(200)", MIXED: "Mixed (OHE+HGB)"}
PREDICT_MODELS = (LOGISTIC, FOREST)  # one numeric body for both
DEFAULT_RATE = Settings.model_fields["attribution_sample_rate"].default


def _cell(r: WrkResult) -> str:
    return f"{r.rps:,.0f} / {r.p99_ms:.2f}"


def _change(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.1f}%"


def _sampled(url: str, model: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    prefix = f'modelserve_attribution_rows_total{{model="{model}"'
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


Runs = dict[bool, list[WrkResult]]  # monitoring on or off: its runs
Checked = dict[str, tuple[Runs, list[float]]]  # by model: the runs, the rows each on run sampled


def predict_runs(
    work: Path, registry: Path, body: Path, pairs: int, seconds: float, warmup: float
) -> Checked:
    """Per model (the logistic model, whose explanations are cheap, and the forest, whose
    TreeSHAP is not), its on and off runs and the rows each on run sampled."""
    checked: Checked = {}
    for model in PREDICT_MODELS:
        # Each its own prediction log: one server's writer never waits on the other's file.
        on_env = {
            "MODELSERVE_ATTRIBUTION_SAMPLE_RATE": str(DEFAULT_RATE),
            "MODELSERVE_PREDICTION_LOG": str(work / f"predictions-{model}-on.db"),
        }
        off_env = {
            "MODELSERVE_ATTRIBUTION_SAMPLE_RATE": "0",
            "MODELSERVE_PREDICTION_LOG": str(work / f"predictions-{model}-off.db"),
        }
        with (
            BenchServer.start("modelserve", work, registry, model, on_env) as on,
            BenchServer.start("modelserve", work, registry, model, off_env) as off,
        ):
            checked[model] = _pairs(model, {True: on, False: off}, body, pairs, seconds, warmup)
    return checked


def _pairs(
    model: str,
    servers: dict[bool, BenchServer],
    body: Path,
    pairs: int,
    seconds: float,
    warmup: float,
) -> tuple[Runs, list[float]]:
    runs: Runs = {True: [], False: []}
    sampled: list[float] = []
    on = servers[True]
    path = on.predict_path(model)
    for server in servers.values():
        wrk(server.url + path, body, PREDICT_CONNECTIONS, warmup)
    for pair in range(pairs):
        for side in (True, False) if pair % 2 == 0 else (False, True):
            time.sleep(SETTLE_S)
            before = _sampled(on.url, model)
            result = wrk(servers[side].url + path, body, PREDICT_CONNECTIONS, seconds)
            runs[side].append(result)
            if side:
                sampled.append(_sampled(on.url, model) - before)
            said = "on" if side else "off"
            print(f"/predict {model} attribution {said}: {result}", file=sys.stderr)
    return runs, sampled


def explain_runs(
    work: Path, registry: Path, bodies: dict[str, Path], seconds: float, warmup: float
) -> dict[tuple[str, int], WrkResult]:
    results: dict[tuple[str, int], WrkResult] = {}
    with BenchServer.start("modelserve", work, registry, LOGISTIC) as srv:
        for model, body in bodies.items():
            url = f"{srv.url}/v1/models/{model}:explain"
            built = httpx.post(url, content=body.read_bytes(), timeout=120)
            built.raise_for_status()  # its explainer built (shap loaded) before any run
            wrk(url, body, 16, warmup)
            # wrk leaves with up to 16 requests still queued in the explain thread; one more,
            # answered after them, keeps that backlog out of the next run's tail.
            httpx.post(url, content=body.read_bytes(), timeout=120).raise_for_status()
            for c in EXPLAIN_CONNECTIONS:
                results[(model, c)] = result = wrk(url, body, c, seconds)
                print(f":explain {model} c={c}: {result}", file=sys.stderr)
    return results


def report(
    checked: Checked,
    explained: dict[tuple[str, int], WrkResult],
    load: tuple[str, str],
) -> list[str]:
    lines: list[str] = []
    for model, (runs, sampled) in checked.items():
        lines += _predict_report(MODELS[model], runs, sampled)
    lines += [
        "`POST /v1/models/{name}:explain`, one row per request (req/s / p99 ms):",
        "",
        "| model | c=1 | c=16 |",
        "|---|---|---|",
    ]
    for model, kind in MODELS.items():
        cells = " | ".join(_cell(explained[(model, c)]) for c in EXPLAIN_CONNECTIONS)
        lines.append(f"| {kind} | {cells} |")
    lines += ["", f"Load average before {load[0]}, after {load[1]}; {os.cpu_count()} cores."]
    return lines


def _predict_report(kind: str, runs: Runs, sampled: list[float]) -> list[str]:
    rps = {side: statistics.median(r.rps for r in results) for side, results in runs.items()}
    p99 = {side: statistics.median(r.p99_ms for r in results) for side, results in runs.items()}
    lines = [
        f"`/predict`, {kind}, one row, wrk c={PREDICT_CONNECTIONS}, one server process each, "
        "runs alternating (req/s / p99 ms):",
        "",
        "| attribution monitoring | runs | median req/s | median p99 ms |",
        "|---|---|---|---|",
    ]
    for side, name in ((True, f"on (rate {DEFAULT_RATE:g}, the default)"), (False, "off (0)")):
        cells = "; ".join(_cell(r) for r in runs[side])
        lines.append(f"| {name} | {cells} | {rps[side]:,.0f} | {p99[side]:.2f} |")
    pairs = list(zip(runs[True], runs[False], strict=True))
    rps_pairs = _change(statistics.median(on.rps / off.rps for on, off in pairs))
    p99_pairs = _change(statistics.median(on.p99_ms / off.p99_ms for on, off in pairs))
    answered = [r.requests for r in runs[True]]
    share = sum(sampled) / sum(answered) if sum(answered) else 0.0
    return [
        *lines,
        "",
        f"On against off, the median of the {len(pairs)} pairs' ratios: req/s {rps_pairs}, p99 "
        f"{p99_pairs} (medians of all runs: req/s {_change(rps[True] / rps[False])}, p99 "
        f"{_change(p99[True] / p99[False])}); rows explained in the on runs: "
        f"{', '.join(f'{s:,.0f}' for s in sampled)} ({100 * share:.2f}% of {sum(answered):,} "
        "answers).",
        "",
    ]


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--pairs", type=int, default=2, help="on/off pairs for /predict")
    args = parser.parse_args()
    before = _load()
    work = Path(tempfile.mkdtemp(prefix="modelserve-bench-explain-"))
    print(f"registry and logs in {work}; load average {before}", file=sys.stderr)
    registry = build_registry(work / "models")
    numeric = write_body(work / "body.json", example_rows(registry, LOGISTIC, 1))
    mixed = write_records_body(work / "body-mixed.json", example_records(registry, MIXED, 1))
    checked = predict_runs(work, registry.root, numeric, args.pairs, args.duration, args.warmup)
    bodies = {LOGISTIC: numeric, FOREST: numeric, MIXED: mixed}
    explained = explain_runs(work, registry.root, bodies, args.duration, args.warmup)
    print("\n".join(report(checked, explained, (before, _load()))))


if __name__ == "__main__":
    main()
