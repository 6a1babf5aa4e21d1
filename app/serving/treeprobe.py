"""The load-time proof that a compiled tree ensemble answers exactly what scikit-learn answers.

Random rows alone could miss one wrong leaf, so the probe takes a row reaching every leaf of
every tree (``treeboxes``), and where the model takes missing values a NaN row per split. Then:

- each row lands on its leaf in the compiled walk;
- each tree's compiled output on its rows is that tree's own scikit-learn output;
- the ensemble's compiled predictions and probabilities on all the rows, with random rows
  around the thresholds, are the model's own ``predict``/``predict_proba``, bit for bit, in
  one call (a random sample of them when rows times trees pass ``FULL_CELLS``).

Trees are probed a group at a time (``GROUP_NODES``), so a large forest's rows are never all
in memory at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from app.serving.treearrays import Floats, TreeArrays
from app.serving.treeboxes import ProbeRows, leaf_rows, round_down, round_up
from app.serving.treescore import CompiledEnsemble, Scored

RANDOM_ROWS = 256
FULL_CELLS = 5_000_000  # rows x trees compared through the whole model in one call
SCORE_CELLS = 1 << 20  # rows x trees x outputs the compiled side scores at a time
GROUP_NODES = 50_000  # nodes whose probe rows are built and checked together
MAX_NODES = 5_000_000  # beyond this the probe takes too long at load


def verify(compiled: CompiledEnsemble) -> str:
    """Empty if the compiled ensemble is exact on every probe row, else why it is refused."""
    arrays = compiled.arrays
    nodes = len(arrays.feature)
    if nodes > MAX_NODES:
        return f"{nodes} nodes: too many to prove at load"
    base = _base_row(compiled)
    most = max(RANDOM_ROWS, FULL_CELLS // arrays.n_trees)
    rng = np.random.default_rng(0)
    kept: list[Floats] = []
    for trees in _groups(arrays):
        probe = leaf_rows(arrays, trees, base, compiled.float32, compiled.allow_nan)
        refused = _each_tree(compiled, probe, trees)
        if refused:
            return refused
        # Rows are about one per node: keep each group's share of what the last check takes.
        share = len(probe.rows) * min(1.0, most / nodes)
        kept.append(probe.rows[rng.permutation(len(probe.rows))[: int(np.ceil(share))]])
    rows = np.vstack([*kept, random_rows(compiled, base, RANDOM_ROWS)])
    try:
        scored = _score(compiled, rows)
        expected = _reference(compiled, rows)
    except Exception as exc:  # a model that cannot score its own probe is not proven
        return f"the probe failed: {type(exc).__name__}: {exc}"
    if scored is None or not all(_same(a, b) for a, b in zip(scored, expected, strict=True)):
        return "its predictions differ from scikit-learn's on the probe rows"
    return ""


def _groups(arrays: TreeArrays) -> Iterator[range]:
    """Consecutive trees with about ``GROUP_NODES`` nodes between them."""
    ends = np.append(arrays.roots[1:], len(arrays.feature))
    start = 0
    while start < arrays.n_trees:
        limit = arrays.roots[start] + GROUP_NODES
        stop = max(start + 1, int(np.searchsorted(ends, limit, side="right")))
        yield range(start, stop)
        start = stop


def _each_tree(compiled: CompiledEnsemble, probe: ProbeRows, trees: range) -> str:
    """Every row on its leaf, and each tree's output scikit-learn's own."""
    arrays = compiled.arrays
    walkable = arrays.walkable(probe.rows)
    if walkable is None:
        return "its categorical splits read codes the walk cannot"
    reached = arrays.leaves_of(walkable, probe.trees)
    targeted = probe.leaves >= 0
    if not np.array_equal(reached[targeted], probe.leaves[targeted]):
        return "a probe row did not reach the leaf it was built for"
    bounds = np.searchsorted(probe.trees, np.arange(trees.start, trees.stop + 1))
    for i, t in enumerate(trees):
        mine = slice(bounds[i], bounds[i + 1])
        own = compiled.per_tree(t, probe.rows[mine])
        if not _same(compiled.table.take(reached[mine], axis=0), own):
            return f"tree {t} answers differently from scikit-learn's"
    return ""


def _score(compiled: CompiledEnsemble, rows: Floats) -> Scored | None:
    """The compiled answers, a slice of rows at a time (a call holds rows x trees values)."""
    step = max(1, SCORE_CELLS // (compiled.arrays.n_trees * compiled.table.shape[1]))
    parts = [compiled.score(rows[i : i + step]) for i in range(0, len(rows), step)]
    if any(p is None for p in parts):
        return None
    predictions = np.concatenate([p[0] for p in parts if p is not None])
    if not compiled.probabilities:
        return predictions, None
    return predictions, np.concatenate([p[1] for p in parts if p is not None and p[1] is not None])


def _reference(compiled: CompiledEnsemble, rows: Floats) -> Scored:
    model = compiled.reference
    with warnings.catch_warnings():  # a model fitted on a DataFrame, probed with a matrix
        warnings.filterwarnings("ignore", "X does not have valid feature names")
        predictions = np.asarray(model.predict(rows))
        if not compiled.probabilities:
            return predictions, None
        return predictions, np.asarray(model.predict_proba(rows), dtype=np.float64)


def _thresholds(arrays: TreeArrays) -> list[Floats]:
    """Each input feature's numeric thresholds."""
    numeric = (arrays.left != np.arange(len(arrays.left))) & (arrays.feature < arrays.width)
    features, values = arrays.feature[numeric], arrays.threshold[numeric]
    order = np.argsort(features, kind="stable")
    bounds = np.searchsorted(features[order], np.arange(arrays.width + 1))
    return [values[order][bounds[f] : bounds[f + 1]] for f in range(arrays.width)]


def _base_row(compiled: CompiledEnsemble) -> Floats:
    """Where a row sits on the features its path does not constrain: each feature's median
    threshold, in the model's float type."""
    medians = [float(np.median(t)) if len(t) else 0.0 for t in _thresholds(compiled.arrays)]
    return round_down(np.asarray(medians, dtype=np.float64), compiled.float32)


def random_rows(compiled: CompiledEnsemble, base: Floats, n: int) -> Floats:
    """Rows on either side of randomly chosen thresholds of each feature (seeded), with
    categorical codes and, where the model takes them, missing values."""
    arrays = compiled.arrays
    rng = np.random.default_rng(0)
    rows = np.tile(base, (n, 1))
    for f, thresholds in enumerate(_thresholds(arrays)):
        if len(thresholds):
            picked = thresholds[rng.integers(len(thresholds), size=n)]
            down, up = round_down(picked, compiled.float32), round_up(picked, compiled.float32)
            rows[:, f] = np.where(rng.random(n) < 0.5, down, up)
    if arrays.categorical is not None:
        for source in set(arrays.categorical.source.tolist()):
            rows[:, source] = rng.integers(0, 16, size=n)
    if compiled.allow_nan:
        rows[rng.random(rows.shape) < 0.1] = np.nan
    rows[np.isinf(rows)] = 0.0
    return rows


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same type and shape, floats to the bit (-0.0 is not 0.0)."""
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        return bool(np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())
    return bool(np.array_equal(a, b))
