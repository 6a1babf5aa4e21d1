"""Rows that reach every leaf of every tree: the load-time probe's rows (``treeprobe``).

Walking a tree from its root, each split narrows the values that follow the path: a range per
feature (lower bound excluded, upper bound included), whether NaN still follows it (every
split on the way sends NaN that way), and for a categorical split the category codes that do.
A leaf's row takes, per feature, the upper edge of its range where it has one (the largest
value of the model's float type at or below the threshold: where a threshold rounded the
wrong way would send the row elsewhere), else the lower edge, else a base value; NaN where
only NaN reaches the leaf. Where the model takes missing values, every split also gets a row
with NaN in its feature, which follows the split's missing side. All nodes of a level of a
group of trees are handled at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.serving.treearrays import CATEGORIES, Flags, Floats, Ints, TreeArrays

MISSING = CATEGORIES  # index of "missing" among a categorical feature's codes


@dataclass(frozen=True)
class ProbeRows:
    rows: Floats
    trees: Ints  # the tree each row was built for, in order
    leaves: Ints  # the leaf it must reach (-1: a NaN row, wherever its missing sides lead)


@dataclass
class Boxes:
    """The paths to a level's nodes: one row per node."""

    node: Ints
    tree: Ints
    low: Floats
    high: Floats
    nan: Flags
    codes: npt.NDArray[np.bool_]  # (nodes, categorical features, CATEGORIES + 1)

    def take(self, which: Ints) -> Boxes:
        return Boxes(
            self.node[which],
            self.tree[which],
            self.low[which],
            self.high[which],
            self.nan[which],
            self.codes[which],
        )


def leaf_rows(
    arrays: TreeArrays, trees: range, base: Floats, float32: bool, allow_nan: bool
) -> ProbeRows:
    """The probe rows of trees ``trees`` (consecutive), grouped tree by tree."""
    sources = _sources(arrays)
    n, width = len(trees), arrays.width
    boxes = Boxes(
        arrays.roots[trees.start : trees.stop].copy(),
        np.arange(trees.start, trees.stop, dtype=np.intp),
        np.full((n, width), -np.inf),
        np.full((n, width), np.inf),
        np.full((n, width), allow_nan),
        np.ones((n, len(sources), CATEGORIES + 1), dtype=bool),
    )
    found: list[tuple[Floats, Ints, Ints]] = []
    while len(boxes.node):
        rows, reached = _inside(boxes, sources, base, float32)
        leaf = arrays.left.take(boxes.node) == boxes.node
        kept = leaf & reached
        found.append((rows[kept], boxes.tree[kept], boxes.node[kept]))
        split = np.flatnonzero(~leaf)
        if allow_nan:
            nan_rows = np.flatnonzero(~leaf & reached)
            columns = _source_columns(arrays, arrays.feature.take(boxes.node[nan_rows]))
            missing = rows[nan_rows]
            missing[np.arange(len(nan_rows)), columns] = np.nan
            found.append((missing, boxes.tree[nan_rows], np.full(len(nan_rows), -1)))
        boxes = _children(arrays, boxes.take(split), sources)
    rows = np.concatenate([f[0] for f in found]).reshape(-1, width)
    tree_of = np.concatenate([f[1] for f in found])
    order = np.argsort(tree_of, kind="stable")
    leaves = np.concatenate([f[2] for f in found]).astype(np.intp)
    return ProbeRows(rows[order], tree_of[order], leaves[order])


def _sources(arrays: TreeArrays) -> Ints:
    """The input columns categorical splits read, each once."""
    if arrays.categorical is None:
        return np.zeros(0, dtype=np.intp)
    return np.unique(arrays.categorical.source)


def _source_columns(arrays: TreeArrays, feature: Ints) -> Ints:
    """The input column each split reads (a categorical split's column is its source's)."""
    if arrays.categorical is None:
        return feature
    categorical = feature >= arrays.width
    j = np.where(categorical, feature - arrays.width, 0)
    return np.where(categorical, arrays.categorical.source.take(j), feature)


def _children(arrays: TreeArrays, boxes: Boxes, sources: Ints) -> Boxes:
    """The boxes of the split nodes' left children, then their right ones."""
    node = boxes.node
    feature = arrays.feature.take(node)
    rows = np.arange(len(node))
    left, right = boxes.take(rows), boxes.take(rows)  # copies
    numeric = np.flatnonzero(feature < arrays.width)
    f, t = feature[numeric], arrays.threshold.take(node[numeric])
    nan_right = arrays.missing_right.take(node[numeric])
    left.high[numeric, f] = np.minimum(boxes.high[numeric, f], t)
    right.low[numeric, f] = np.maximum(boxes.low[numeric, f], t)
    left.nan[numeric, f] &= ~nan_right
    right.nan[numeric, f] &= nan_right
    splits = arrays.categorical
    if splits is not None:
        categorical = np.flatnonzero(feature >= arrays.width)
        j = feature[categorical] - arrays.width
        s = np.searchsorted(sources, splits.source.take(j))
        goes = np.concatenate([splits.goes_right[j], splits.missing_right[j][:, None]], axis=1)
        left.codes[categorical, s] &= ~goes
        right.codes[categorical, s] &= goes
    return Boxes(
        np.concatenate([arrays.left.take(node), arrays.right.take(node)]),
        np.concatenate([left.tree, right.tree]),
        np.concatenate([left.low, right.low]),
        np.concatenate([left.high, right.high]),
        np.concatenate([left.nan, right.nan]),
        np.concatenate([left.codes, right.codes]),
    )


def _inside(boxes: Boxes, sources: Ints, base: Floats, float32: bool) -> tuple[Floats, Flags]:
    """A row in each box, on its upper edges where it has them, and whether anything the
    model reads reaches the box's node at all."""
    low, high = boxes.low, boxes.high
    upper, lower = round_down(high, float32), round_up(low, float32)
    rows: Floats = np.where(np.isfinite(high), upper, np.where(np.isfinite(low), lower, base))
    numeric = (rows > low) & (rows <= high) & np.isfinite(rows)
    reached: Flags = np.asarray((numeric | boxes.nan).all(axis=1))
    rows[~numeric] = np.nan
    for s, source in enumerate(sources.tolist()):
        codes = boxes.codes[:, s, :CATEGORIES]
        some = codes.any(axis=1)
        missing = boxes.codes[:, s, MISSING]
        rows[:, source] = np.where(some, codes.argmax(axis=1), np.where(missing, np.nan, 0.0))
        reached &= some | missing
    return rows, reached


def round_down(x: Floats, float32: bool) -> Floats:
    """The largest value of the model's float type at or below each x."""
    if not float32:
        return x.copy()
    with np.errstate(over="ignore"):
        down = x.astype(np.float32)
    above = down.astype(np.float64) > x
    down[above] = np.nextafter(down[above], np.float32(-np.inf))
    return down.astype(np.float64)


def round_up(x: Floats, float32: bool) -> Floats:
    """The smallest value of the model's float type strictly above each x."""
    if not float32:
        return np.nextafter(x, np.inf)
    with np.errstate(over="ignore"):
        up = x.astype(np.float32)
    below = up.astype(np.float64) <= x
    up[below] = np.nextafter(up[below], np.float32(np.inf))
    return up.astype(np.float64)
