"""Issue #27's starting code, served beside today's in the same run.

Its speed targets are multiples of modelserve's req/s when it was filed, on a machine whose
speed moves a lot from day to day (the textbook app's c=64 req/s went from 2,095 that day to
1,360 and 471 on later ones), and from minute to minute (the same server ±15%). Measured again
in the run, from a checkout of the commit it was filed on, in pairs of runs alternating with
today's code, they compare code with code on the same machine in the same minutes.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from bench.servers import WrkResult, cell, fresh_c64

FILED_ON = "c77e811"
"""main when issue #27 was filed (2026-12-06)."""
KIND = "modelserve-before"
"""The bench's server kind for it: one process, served from the checkout."""
REPO = Path(__file__).resolve().parent.parent
PAIRS = 3

Pair = tuple[WrkResult, WrkResult]  # the starting code's run, today's
Paired = dict[str, list[Pair]]  # by model


@contextlib.contextmanager
def checkout(rev: str, work: Path) -> Iterator[Path | None]:
    """A detached worktree of ``rev`` under ``work``, removed afterwards; None (and why, on
    stderr) when this is not a git checkout that has ``rev``."""
    path = work / f"modelserve-{rev}"
    made = subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--quiet", "--detach", str(path), rev],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        said = made.stderr.strip()
        print(f"no checkout of {rev}, its runs are left out: {said}", file=sys.stderr)
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
            capture_output=True,
            check=False,
        )


def paired_runs(
    work: Path, registry: Path, repo: Path, bodies: dict[str, Path], seconds: float, warmup: float
) -> Paired:
    """Per model, ``PAIRS`` pairs of c=64 runs, the starting code's and today's, each on a fresh
    one-process server, their order alternating (a drift of the machine's speed over the
    minutes falls on both sides)."""
    paired: Paired = {}
    for model, body in bodies.items():
        pairs: list[Pair] = []
        for i in range(PAIRS):
            sides = [(KIND, repo), ("modelserve", None)]
            got: dict[str, WrkResult] = {}
            for kind, checkout_ in sides if i % 2 == 0 else sides[::-1]:
                got[kind] = fresh_c64(
                    work, registry, model, body, seconds, warmup, kind, repo=checkout_
                )
                print(f"{kind} {model} c=64 (pair {i + 1}): {got[kind]}", file=sys.stderr)
            pairs.append((got[KIND], got["modelserve"]))
        paired[model] = pairs
    return paired


def speedup(pairs: list[Pair]) -> tuple[float, float]:
    """Today's req/s as a multiple of the starting code's (the median of the pairs' ratios),
    and today's median p99 in ms."""
    ratio = statistics.median(now.rps / then.rps for then, now in pairs)
    return ratio, statistics.median(now.p99_ms for _, now in pairs)


def report(paired: Paired, kinds: dict[str, str]) -> list[str]:
    """The pairs, model by model (nothing if they did not run)."""
    if not paired:
        return []
    lines = [
        f"Issue #27's starting code ({FILED_ON}) and today's at c=64, in this run: {PAIRS} pairs "
        "of runs, each on a fresh one-process server, alternating; req/s (p50 ms / p99 ms)",
        "",
        f"| model | {FILED_ON} | today | ratio, median of the pairs |",
        "|---|---|---|---|",
    ]
    for model, pairs in paired.items():
        then = "; ".join(cell(t) for t, _ in pairs)
        now = "; ".join(cell(n) for _, n in pairs)
        lines.append(f"| {kinds[model]} | {then} | {now} | {speedup(pairs)[0]:.2f}× |")
    return [*lines, ""]
