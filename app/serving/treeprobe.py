"""The load-time proof that a compiled tree ensemble answers exactly what scikit-learn answers.

Random rows alone could miss one wrong leaf, so the probe builds, for every leaf of every tree,
a row that reaches it: inside the box of its path, on the upper edge where there is one (the
largest value the model's float type holds at or below the threshold, where a threshold
rounded the wrong way would send it elsewhere). Where the model takes missing values, each
split also gets a row with NaN in its feature, which follows the split's missing side. Then:

- each row lands on its leaf in the compiled walk;
- each tree's compiled output on its rows is that tree's own scikit-learn output;
- the ensemble's compiled predictions and probabilities on all the rows, with random rows
  around the thresholds, are the model's own ``predict``/``predict_proba``, bit for bit, in
  one call (a sample of them when rows times trees pass ``FULL_CELLS``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from app.serving.treearrays import CATEGORIES, Floats, Ints, TreeArrays
from app.serving.treescore import CompiledEnsemble, Scored

RANDOM_ROWS = 256
FULL_CELLS = 40_000_000  # rows x trees compared through the whole model in one call
MAX_NODES = 1_000_000  # beyond this the probe's rows cost too much memory and time at load
MISSING = CATEGORIES  # index of "missing" in a categorical feature's allowed set


@dataclass
class ProbeRows:
    rows: Floats
    trees: Ints  # the tree each row was built for
    leaves: Ints  # the leaf it must reach (-1: a NaN row, wherever its missing sides lead)


def verify(compiled: CompiledEnsemble) -> str:
    """Empty if the compiled ensemble is exact on every probe row, else why it is refused."""
    arrays = compiled.arrays
    if len(arrays.feature) > MAX_NODES:
        return f"{len(arrays.feature)} nodes: too many to prove at load"
    probe = leaf_rows(compiled)
    walkable = arrays.walkable(probe.rows)
    if walkable is None:
        return "its categorical splits read codes the walk cannot"
    reached = arrays.leaves_of(walkable, probe.trees)
    targeted = probe.leaves >= 0
    if not np.array_equal(reached[targeted], probe.leaves[targeted]):
        return "a probe row did not reach the leaf it was built for"
    bounds = np.searchsorted(probe.trees, np.arange(arrays.n_trees + 1))  # rows go tree by tree
    for t in range(arrays.n_trees):
        mine = slice(bounds[t], bounds[t + 1])
        own = compiled.per_tree(t, probe.rows[mine])
        if not _same(compiled.table.take(reached[mine], axis=0), own):
            return f"tree {t} answers differently from scikit-learn's"
    rows = np.vstack([probe.rows, random_rows(compiled, RANDOM_ROWS)])
    most = max(RANDOM_ROWS, FULL_CELLS // arrays.n_trees)
    if len(rows) > most:
        rows = rows[np.random.default_rng(0).choice(len(rows), most, replace=False)]
    try:
        scored = compiled.score(rows)
        expected = _reference(compiled, rows)
    except Exception as exc:  # a model that cannot score its own probe is not proven
        return f"the probe failed: {type(exc).__name__}: {exc}"
    if scored is None or not all(_same(a, b) for a, b in zip(scored, expected, strict=True)):
        return "its predictions differ from scikit-learn's on the probe rows"
    return ""


def _reference(compiled: CompiledEnsemble, rows: Floats) -> Scored:
    model = compiled.reference
    with warnings.catch_warnings():  # a model fitted on a DataFrame, probed with a matrix
        warnings.filterwarnings("ignore", "X does not have valid feature names")
        predictions = np.asarray(model.predict(rows))
        if not compiled.probabilities:
            return predictions, None
        return predictions, np.asarray(model.predict_proba(rows), dtype=np.float64)


def leaf_rows(compiled: CompiledEnsemble) -> ProbeRows:
    """A row reaching every leaf of every tree, plus (models taking NaN) one row per split
    with NaN in its feature."""
    arrays = compiled.arrays
    base = _base_row(compiled)
    rows: list[Floats] = []
    trees: list[int] = []
    leaves: list[int] = []
    for t, root in enumerate(arrays.roots.tolist()):
        for box in _paths(arrays, int(root), compiled.allow_nan):
            row = _inside(box, base, compiled.float32)
            if row is None:
                continue  # nothing the model reads reaches it
            node = box.node
            split = arrays.left[node] != node
            if split and not compiled.allow_nan:
                continue
            if split:
                feature = int(arrays.feature[node])
                if feature >= arrays.width and arrays.categorical is not None:
                    feature = int(arrays.categorical.source[feature - arrays.width])
                row[feature] = np.nan
            rows.append(row)
            trees.append(t)
            leaves.append(-1 if split else node)
    width = arrays.width
    return ProbeRows(
        np.asarray(rows, dtype=np.float64).reshape(-1, width),
        np.asarray(trees, dtype=np.intp),
        np.asarray(leaves, dtype=np.intp),
    )


@dataclass(frozen=True)
class Box:
    """The values that follow a tree's path to a node: per feature, a range (lower bound
    excluded, upper included) or NaN where every split on the way sends NaN that way, and the
    category codes each categorical feature may take (the last one: missing)."""

    node: int
    low: Floats
    high: Floats
    nan: npt.NDArray[np.bool_]
    codes: dict[int, npt.NDArray[np.bool_]]


def _paths(arrays: TreeArrays, root: int, allow_nan: bool) -> Iterator[Box]:
    """Every node of a tree with the box of its path."""
    width = arrays.width
    full = Box(root, np.full(width, -np.inf), np.full(width, np.inf), np.full(width, allow_nan), {})
    stack = [full]
    splits = arrays.categorical
    while stack:
        box = stack.pop()
        yield box
        node = box.node
        left, right = int(arrays.left[node]), int(arrays.right[node])
        if left == node:
            continue
        feature = int(arrays.feature[node])
        if feature < width:
            threshold = float(arrays.threshold[node])
            high, low = box.high.copy(), box.low.copy()
            high[feature] = min(high[feature], threshold)
            low[feature] = max(low[feature], threshold)
            nan_left, nan_right = box.nan.copy(), box.nan.copy()
            nan_left[feature] &= not arrays.missing_right[node]
            nan_right[feature] &= bool(arrays.missing_right[node])
            stack.append(Box(left, box.low, high, nan_left, box.codes))
            stack.append(Box(right, low, box.high, nan_right, box.codes))
            continue
        assert splits is not None
        j = feature - width
        source = int(splits.source[j])
        goes = np.append(splits.goes_right[j], splits.missing_right[j])
        current = box.codes.get(source, np.ones(CATEGORIES + 1, dtype=bool))
        stack.append(Box(left, box.low, box.high, box.nan, {**box.codes, source: current & ~goes}))
        stack.append(Box(right, box.low, box.high, box.nan, {**box.codes, source: current & goes}))


def _inside(box: Box, base: Floats, float32: bool) -> Floats | None:
    """A row in the box, on its upper edges where it has them (NaN for a feature only NaN
    reaches); None if nothing the model reads reaches the node."""
    low, high = box.low, box.high
    upper, lower = _round_down(high, float32), _round_up(low, float32)
    row = np.where(np.isfinite(high), upper, np.where(np.isfinite(low), lower, base))
    numeric = (row > low) & (row <= high) & np.isfinite(row)
    if not (numeric | box.nan).all():
        return None
    row[~numeric] = np.nan
    for source, codes in box.codes.items():
        known = np.flatnonzero(codes[:CATEGORIES])
        if len(known):
            row[source] = float(known[0])
        elif codes[MISSING]:
            row[source] = np.nan
        else:
            return None
    return row


def _round_down(x: Floats, float32: bool) -> Floats:
    """The largest value of the model's float type at or below each x."""
    if not float32:
        return x.copy()
    with np.errstate(over="ignore"):
        down = x.astype(np.float32)
    above = down.astype(np.float64) > x
    down[above] = np.nextafter(down[above], np.float32(-np.inf))
    return down.astype(np.float64)


def _round_up(x: Floats, float32: bool) -> Floats:
    """The smallest value of the model's float type strictly above each x."""
    if not float32:
        return np.nextafter(x, np.inf)
    with np.errstate(over="ignore"):
        up = x.astype(np.float32)
    below = up.astype(np.float64) <= x
    up[below] = np.nextafter(up[below], np.float32(np.inf))
    return up.astype(np.float64)


def _thresholds(arrays: TreeArrays) -> list[Floats]:
    """Each input feature's numeric thresholds."""
    numeric = (arrays.left != np.arange(len(arrays.left))) & (arrays.feature < arrays.width)
    features, values = arrays.feature[numeric], arrays.threshold[numeric]
    return [values[features == f] for f in range(arrays.width)]


def _base_row(compiled: CompiledEnsemble) -> Floats:
    """Where a row sits on the features its path does not constrain: each feature's median
    threshold, in the model's float type."""
    medians = [float(np.median(t)) if len(t) else 0.0 for t in _thresholds(compiled.arrays)]
    return _round_down(np.asarray(medians, dtype=np.float64), compiled.float32)


def random_rows(compiled: CompiledEnsemble, n: int) -> Floats:
    """Rows on either side of randomly chosen thresholds of each feature (seeded), with
    categorical codes and, where the model takes them, missing values."""
    arrays = compiled.arrays
    rng = np.random.default_rng(0)
    rows = np.tile(_base_row(compiled), (n, 1))
    for f, thresholds in enumerate(_thresholds(arrays)):
        if len(thresholds):
            picked = thresholds[rng.integers(len(thresholds), size=n)]
            down, up = _round_down(picked, compiled.float32), _round_up(picked, compiled.float32)
            rows[:, f] = np.where(rng.random(n) < 0.5, down, up)
    if arrays.categorical is not None:
        for source in set(arrays.categorical.source.tolist()):
            rows[:, source] = rng.integers(0, 16, size=n)
    if compiled.allow_nan:
        rows[rng.random(rows.shape) < 0.1] = np.nan
    rows[~np.isfinite(rows) & ~np.isnan(rows)] = 0.0
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
