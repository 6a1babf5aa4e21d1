"""A/B of server variants at c=64: fresh one-process servers, rounds alternating their order.

The machine's speed drifts by tens of percent within minutes, so two variants are compared
only in the same minutes: each round starts every variant on a fresh server, warms it at
c=16, runs wrk at c=64, and the next round takes the variants in reverse order. A variant is
settings (environment variables) and optionally a checkout of other code::

    .venv/bin/python bench/ab.py --rounds 4 --model logistic \\
        today nolog:MODELSERVE_PREDICTION_LOG_ENABLED=false other@/path/to/worktree

``NAME[:ENV=VALUE,...][@CHECKOUT]``. Each run prints req/s, p50, p90, p99 and max; the
summary the median of each over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.models import FOREST, LOGISTIC, MIXED, build_registry, example_records, example_rows
from bench.servers import WrkResult, fresh_c64, write_body, write_records_body

MODELS = {"logistic": LOGISTIC, "forest": FOREST, "mixed": MIXED}


@dataclass(frozen=True)
class Variant:
    name: str
    env: dict[str, str]
    checkout: Path | None

    @classmethod
    def parse(cls, spec: str) -> Variant:
        """``NAME[:ENV=VALUE,...][@CHECKOUT]``."""
        spec, _, checkout = spec.partition("@")
        name, _, settings = spec.partition(":")
        pairs = [item.split("=", 1) for item in settings.split(",") if item]
        if not name or any(len(pair) != 2 for pair in pairs):
            raise argparse.ArgumentTypeError(f"NAME[:ENV=VALUE,...][@CHECKOUT], got {spec!r}")
        return cls(name, {k: v for k, v in pairs}, Path(checkout) if checkout else None)


def line(name: str, r: WrkResult) -> str:
    return (
        f"{name:18s} {r.rps:7,.0f} req/s  p50 {r.p50_ms:6.2f}  p90 {r.p90_ms:6.2f}  "
        f"p99 {r.p99_ms:6.2f}  max {r.max_ms:6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("variants", nargs="+", type=Variant.parse)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per c=64 run")
    parser.add_argument("--model", choices=sorted(MODELS), default="logistic")
    args = parser.parse_args()
    model = MODELS[args.model]
    work = Path(tempfile.mkdtemp(prefix="modelserve-ab-"))
    models = work / "models"
    registry = build_registry(models)
    body = work / "body.json"
    if model == MIXED:
        write_records_body(body, example_records(registry, model, 1))
    else:
        write_body(body, example_rows(registry, model, 1))
    runs: dict[str, list[WrkResult]] = {v.name: [] for v in args.variants}
    for i in range(args.rounds):
        for v in args.variants if i % 2 == 0 else args.variants[::-1]:
            result = fresh_c64(
                work, models, model, body, args.duration, 2, env=v.env, repo=v.checkout
            )
            runs[v.name].append(result)
            print(line(v.name, result), flush=True)
    print("median of the rounds:")
    for name, results in runs.items():
        print(line(name, _median(results)))


def _median(results: list[WrkResult]) -> WrkResult:
    mid = statistics.median
    return WrkResult(
        requests=round(mid(r.rps for r in results)),
        seconds=1.0,
        socket_errors=sum(r.socket_errors for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        p50_ms=mid(r.p50_ms for r in results),
        p90_ms=mid(r.p90_ms for r in results),
        p99_ms=mid(r.p99_ms for r in results),
        max_ms=mid(r.max_ms for r in results),
    )


if __name__ == "__main__":
    main()
