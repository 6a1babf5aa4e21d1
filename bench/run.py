"""Side-by-side benchmark: modelserve (1 process, --workers 2) against the textbook baseline.

One command (``make bench``) trains a RandomForest(200) into a temporary registry copy next
to the default logistic model, starts every server itself on loopback, warms up, runs wrk at
c=1, 16 and 64 for both models, runs the overload check (c=512 on the forest) and prints a
markdown table. ``--markdown PATH`` also writes it to a file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.models import FOREST, LOGISTIC, build_registry, example_rows, predict_floor_ms
from bench.servers import BenchServer, WrkResult, overload_check, write_body, wrk

CONCURRENCY = (1, 16, 64)
SERVERS = ("modelserve", "modelserve-w2", "baseline")


def _cell(r: WrkResult | None) -> str:
    if r is None:
        return "-"
    return f"{r.rps:,.0f} ({r.p50_ms:.2f} / {r.p99_ms:.1f})"


def _ratio(a: WrkResult | None, b: WrkResult | None) -> str:
    return "-" if a is None or b is None or b.rps == 0 else f"{a.rps / b.rps:.1f}×"


def _machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--markdown", type=Path, help="also write the report here")
    args = parser.parse_args()

    load_before = _load()
    work = Path(tempfile.mkdtemp(prefix="modelserve-bench-"))
    print(f"registry and logs in {work}; load average {load_before}", file=sys.stderr)
    registry = build_registry(work / "models")
    floors = {
        (name, rows): predict_floor_ms(registry, name, rows)
        for name in (LOGISTIC, FOREST)
        for rows in (1, 64)
    }
    body = write_body(work / "body.json", example_rows(registry, LOGISTIC, 1))
    results: dict[tuple[str, str, int], WrkResult] = {}
    for server in SERVERS:
        # modelserve serves both models from one server; the baseline serves one model each.
        groups = [[LOGISTIC, FOREST]] if server != "baseline" else [[LOGISTIC], [FOREST]]
        for models in groups:
            with BenchServer.start(server, work, registry.root, models[0]) as srv:
                for model in models:
                    url = srv.url + srv.predict_path(model)
                    wrk(url, body, 16, args.warmup)
                    for c in CONCURRENCY:
                        result = wrk(url, body, c, args.duration)
                        results[(server, model, c)] = result
                        print(f"{server} {model} c={c}: {result}", file=sys.stderr)
    overload = overload_check(work, registry.root, body, args.duration)
    load_after = _load()

    lines = [
        f"modelserve benchmark, {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"machine: {_machine()}; load average before {load_before}, after {load_after}",
        "",
        "Single-row POSTs, wrk on the same machine, metrics on. Cells: req/s (p50 ms / p99 ms).",
        "",
        "| model | c | baseline | modelserve | ratio | modelserve --workers 2 | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for model in (LOGISTIC, FOREST):
        kind = "LogisticRegression" if model == LOGISTIC else "RandomForest(200)"
        for c in CONCURRENCY:
            base = results.get(("baseline", model, c))
            one = results.get(("modelserve", model, c))
            two = results.get(("modelserve-w2", model, c))
            lines.append(
                f"| {kind} | {c} | {_cell(base)} | {_cell(one)} | {_ratio(one, base)} "
                f"| {_cell(two)} | {_ratio(two, base)} |"
            )
    lines += [
        "",
        "In-process `predict` floor (no HTTP, median): "
        + ", ".join(
            f"{'logistic' if n == LOGISTIC else 'forest'} {rows} row{'s' if rows > 1 else ''}"
            f" {ms:.2f} ms"
            for (n, rows), ms in floors.items()
        ),
        "",
        *overload.report(),
    ]
    report = "\n".join(lines)
    print(report)
    if args.markdown:
        args.markdown.write_text(report + "\n")


if __name__ == "__main__":
    main()
