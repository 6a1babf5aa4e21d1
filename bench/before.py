"""Issue #27's starting code, served beside today's in the same run.

Its speed targets are multiples of modelserve's req/s when it was filed, on a machine whose
speed moves a lot from day to day (the textbook app's c=64 req/s went from 2,095 that day to
1,360 and 390 on later ones). Measured again in the run, from a checkout of the commit it was
filed on, they compare code with code on the same machine in the same minutes.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.servers import WrkResult, cell

FILED_ON = "c77e811"
"""main when issue #27 was filed (2026-12-06)."""
KIND = "modelserve-before"
"""The bench's server kind for it: one process, served from the checkout."""
REPO = Path(__file__).resolve().parent.parent


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
        print(f"no checkout of {rev}, its column is left out: {made.stderr.strip()}")
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


def speedups(
    results: dict[tuple[str, str, int], WrkResult], models: Sequence[str], kinds: dict[str, str]
) -> list[str]:
    """Today's one process against the starting code's, each cell of the run (empty if it did
    not run)."""
    rows = [
        (model, c, results[(KIND, model, c)], results[("modelserve", model, c)])
        for model in models
        for c in (1, 16, 64)
        if (KIND, model, c) in results and ("modelserve", model, c) in results
    ]
    if not rows:
        return []
    lines = [
        f"Issue #27's starting code ({FILED_ON}) in this run, one process each: req/s "
        "(p50 ms / p99 ms)",
        "",
        f"| model | c | {FILED_ON} | today | ratio |",
        "|---|---|---|---|---|",
    ]
    for model, c, before, now in rows:
        lines.append(
            f"| {kinds[model]} | {c} | {cell(before)} | {cell(now)} | {now.rps / before.rps:.2f}× |"
        )
    return [*lines, ""]
