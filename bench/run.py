"""Side-by-side benchmark: modelserve (1 process, --workers 2) against the textbook baseline.

One command (``make bench``) trains a RandomForest(200) and a mixed-type pipeline
(OneHotEncoder + HistGradientBoosting on a DataFrame) into a temporary registry copy next
to the default logistic model, starts every server itself on loopback, warms up, runs wrk at
c=1, 16 and 64 for the three models, profiles where a request's time goes at c=1 and 64
(``bench/stages.py``), runs the overload check (c=512 on the forest), the
protocol table (``bench/protocols.py``: JSON, binary tensors, gRPC; needs h2load) and the
shadow on/off check (``bench/shadow.py``, logistic at c=16), what explaining costs
(``bench/explain.py``: /predict with attribution monitoring on and off, ``:explain`` at c=1
and 16 per model; with all three models) and prints a markdown table. The code issue #27 was
filed on is served too, one process, from a checkout of its commit, at c=64 in runs alternating
with today's (``bench/before.py``; ``--before ''`` leaves it out): that issue's targets are
multiples of its req/s.
``--markdown PATH`` also writes it to a file; ``--models mixed`` (a comma list of logistic,
forest, mixed) benches only some models, without the overload check unless the forest is
among them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import before
from bench.explain import explain_runs, predict_runs
from bench.explain import report as explain_report
from bench.models import (
    FOREST,
    LOGISTIC,
    MIXED,
    build_registry,
    example_records,
    example_rows,
    predict_floor_ms,
    scorer_floor_ms,
)
from bench.protocols import protocol_rows
from bench.protocols import report as protocol_report
from bench.servers import (
    BenchServer,
    WrkResult,
    cell,
    overload_check,
    write_body,
    write_records_body,
    wrk,
)
from bench.shadow import shadow_check
from bench.stages import stage_profiles
from bench.stages import table as stage_table
from bench.targets import ratio, targets

CONCURRENCY = (1, 16, 64)
SERVERS = ("modelserve", "modelserve-w2", "baseline")
MODELS = (LOGISTIC, FOREST, MIXED)  # table order: the numeric rows first, as in earlier tables
SHORT = {"logistic": LOGISTIC, "forest": FOREST, "mixed": MIXED}
KINDS = {
    LOGISTIC: "LogisticRegression",
    FOREST: "RandomForest(200)",
    MIXED: "Mixed (OHE+HGB, 8 cols)",
}


def _kind(model: str) -> str:
    return KINDS[model]


def _models(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in SHORT]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SHORT)}; got {value!r}")
    return [m for m in MODELS if m in {SHORT[n] for n in names}]


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


# Each of the shadow check's 12 runs (6 off/on pairs in one server): longer than the main table's.
SHADOW_RUN_S = 12.0


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--markdown", type=Path, help="also write the report here")
    parser.add_argument(
        "--before",
        default=before.FILED_ON,
        help="also serve this commit's code, one process (default: issue #27's start; '' not)",
    )
    parser.add_argument("--shadow-only", action="store_true", help="only the shadow on/off check")
    parser.add_argument(
        "--protocols-only",
        action="store_true",
        help="only the protocol table (JSON, binary tensors, gRPC; needs h2load)",
    )
    parser.add_argument(
        "--models",
        type=_models,
        default=list(MODELS),
        help="comma list of logistic, forest, mixed (default: all three)",
    )
    args = parser.parse_args()
    models: list[str] = args.models

    load_before = _load()
    work = Path(tempfile.mkdtemp(prefix="modelserve-bench-"))
    print(f"registry and logs in {work}; load average {load_before}", file=sys.stderr)
    registry = build_registry(work / "models")
    floors = {
        (name, rows): predict_floor_ms(registry, name, rows) for name in models for rows in (1, 64)
    }
    scorer = {
        (name, rows): scorer_floor_ms(registry, name, rows) for name in models for rows in (1, 64)
    }
    # The numeric models share one positional row (the logistic example, as before); the
    # mixed model gets one row as an object keyed by feature name.
    body = write_body(work / "body.json", example_rows(registry, LOGISTIC, 1))
    bodies = {LOGISTIC: body, FOREST: body}
    if MIXED in models:
        records = example_records(registry, MIXED, 1)
        bodies[MIXED] = write_records_body(work / "body-mixed.json", records)
    protocol_models = {m: example_rows(registry, LOGISTIC, 1)[0] for m in (LOGISTIC, FOREST)}
    if args.protocols_only:
        by_protocol = protocol_rows(
            work, registry.root, protocol_models, args.duration, args.warmup
        )
        print("\n".join(protocol_report(by_protocol, KINDS)))
        return
    if args.shadow_only:
        shadow_seconds = max(args.duration, SHADOW_RUN_S)
        print("\n".join(shadow_check(work, registry, body, shadow_seconds).report()))
        return
    results: dict[tuple[str, str, int], WrkResult] = {}
    for server in SERVERS:
        # modelserve serves every model from one server; the baseline serves one model each.
        groups = [models] if server != "baseline" else [[m] for m in models]
        for group in groups:
            with BenchServer.start(server, work, registry.root, group[0]) as srv:
                for model in group:
                    url = srv.url + srv.predict_path(model)
                    wrk(url, bodies[model], 16, args.warmup)
                    for c in CONCURRENCY:
                        result = wrk(url, bodies[model], c, args.duration)
                        results[(server, model, c)] = result
                        print(f"{server} {model} c={c}: {result}", file=sys.stderr)
    benched = {m: bodies[m] for m in models}
    paired: before.Paired = {}
    with before.checkout(args.before, work) if args.before else nullcontext() as old:
        if old is not None:
            paired = before.paired_runs(
                work, registry.root, old, benched, args.duration, args.warmup
            )
    stages = stage_profiles(work, registry.root, benched, args.duration)
    overload = (
        overload_check(work, registry.root, body, args.duration) if FOREST in models else None
    )
    by_protocol = protocol_rows(work, registry.root, protocol_models, args.duration, args.warmup)
    shadow_seconds = max(args.duration, SHADOW_RUN_S)
    shadow = shadow_check(work, registry, body, shadow_seconds) if LOGISTIC in models else None
    explain_lines: list[str] = []
    if set(models) == set(MODELS):  # issue #28's table: all three models
        checked = predict_runs(work, registry.root, body, 2, args.duration, args.warmup)
        explained = explain_runs(work, registry.root, bodies, args.duration, args.warmup)
        explain_lines = ["", *explain_report(checked, explained, (_load(), _load()))]
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
    for model in models:
        kind = _kind(model)
        for c in CONCURRENCY:
            base = results.get(("baseline", model, c))
            one = results.get(("modelserve", model, c))
            two = results.get(("modelserve-w2", model, c))
            lines.append(
                f"| {kind} | {c} | {cell(base)} | {cell(one)} | {ratio(one, base)} "
                f"| {cell(two)} | {ratio(two, base)} |"
            )
    lines += [
        "",
        *protocol_report(by_protocol, KINDS),
        "",
        "In-process floor (no HTTP, median of 30 calls), ms:",
        "",
        "| model | sklearn `predict` 1 row | 64 rows | modelserve model call 1 row | 64 rows |",
        "|---|---|---|---|---|",
        *(
            f"| {_kind(n)} | {floors[(n, 1)]:.2f} | {floors[(n, 64)]:.2f} "
            f"| {scorer[(n, 1)]:.2f} | {scorer[(n, 64)]:.2f} |"
            for n in models
        ),
        *(
            [
                "",
                "Mixed: sklearn `predict` on a `pd.DataFrame` of the rows; modelserve's call is "
                "the served version's scorer (its compiled transform and trees) on the rows its "
                "input contract checks.",
            ]
            if MIXED in models
            else []
        ),
        "",
        "Where a request's time goes (one modelserve process; `bench/stages.py`: the GIL-holding",
        "thread sampled by py-spy, each sample given to the stage of its innermost known frame):",
        "",
        *stage_table(stages),
        "",
        *before.report(paired, KINDS),
        "Targets (one process):",
        "",
        *targets(results, floors, overload, models, paired),
        *(["", *overload.report()] if overload is not None else []),
        *(["", *shadow.report()] if shadow is not None else []),
        *explain_lines,
    ]
    report = "\n".join(lines)
    print(report)
    if args.markdown:
        args.markdown.write_text(report + "\n")


if __name__ == "__main__":
    main()
