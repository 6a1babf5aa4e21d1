"""A tree ensemble as flat node arrays, walked for every row and tree at once with numpy.

Each tree becomes a block of nodes in one set of arrays (split feature, threshold, children,
the side a missing value takes). A leaf is its own child on both sides, so ``depth`` steps from
every root land each (row, tree) pair on its leaf whatever the leaf's depth. The comparison is
scikit-learn's: ``x <= threshold`` goes left with a float64 threshold and ``x`` as the model
reads it (float32 for ``sklearn.tree``, float64 for histogram boosting), NaN goes to the node's
missing side. A categorical split of histogram boosting reads a column computed before the walk
(``CategoricalSplits``): 1.0 where the row's category goes right, split at 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.intp]
Floats = npt.NDArray[np.float64]
Flags = npt.NDArray[np.bool_]
CATEGORIES = 256  # histogram boosting's category codes are uint8
CHUNK = 1 << 14  # (row, tree) pairs walked together: their arrays stay in the CPU's cache


@dataclass(frozen=True)
class CategoricalSplits:
    """The categorical nodes of histogram boosting, as the columns the walk reads."""

    source: Ints  # the model's input column each categorical node reads
    goes_right: Flags  # (nodes, CATEGORIES): where each category code goes
    missing_right: Flags  # NaN, a negative code or an unknown category

    def columns(self, X: Floats) -> Floats | None:
        """One 0/1 column per categorical node, or None for a code past uint8 (scikit-learn's
        own cast is undefined there: the call is left to it)."""
        values = X[:, self.source]
        missing = np.isnan(values) | (values < 0)
        if (values >= CATEGORIES).any():
            return None
        codes = np.where(missing, 0, values).astype(np.intp)  # truncates, as C's cast does
        right = self.goes_right[np.arange(len(self.source)), codes]
        return np.where(missing, self.missing_right, right).astype(np.float64)


@dataclass(frozen=True)
class TreeArrays:
    feature: Ints
    threshold: Floats
    left: Ints
    right: Ints
    missing_right: Flags
    roots: Ints
    depth: int
    width: int  # the model's input columns; categorical split columns come after them
    children: Ints  # left and right of node i at 2i and 2i + 1
    categorical: CategoricalSplits | None = None

    @property
    def n_trees(self) -> int:
        return len(self.roots)

    def walkable(self, X: Floats) -> Floats | None:
        """X with the categorical split columns appended (None: leave the call to sklearn)."""
        if self.categorical is None:
            return X
        extra = self.categorical.columns(X)
        return None if extra is None else np.hstack([X, extra])

    def leaves(self, X: Floats) -> Ints:
        """(rows, trees): the node each row reaches in each tree (``X`` from ``walkable``)."""
        n = X.shape[0]
        if n == 1 and len(self.feature) <= 8 * self.n_trees * self.depth:
            # One row: every node's decision at once (a few vector operations over all
            # nodes), then one lookup per level; cheaper than walking unless nodes are many.
            x = X[0].take(self.feature)
            right = x > self.threshold
            if np.isnan(x).any():
                right |= np.isnan(x) & self.missing_right
            step = np.where(right, self.right, self.left)
            node = self.roots
            for _ in range(self.depth):
                node = step.take(node)
            return node.reshape(1, -1)
        rows = np.repeat(np.arange(n), self.n_trees)
        return self.walk(X, np.tile(self.roots, n), rows).reshape(n, self.n_trees)

    def leaves_of(self, X: Floats, trees: Ints) -> Ints:
        """The leaf row ``i`` of ``X`` reaches in tree ``trees[i]`` (the load-time probe)."""
        return self.walk(X, self.roots[trees], np.arange(X.shape[0]))

    def walk(self, X: Floats, node: Ints, rows: Ints) -> Ints:
        """Walk each (row, start node) pair down to its leaf, one level per step."""
        flat = np.ascontiguousarray(X).ravel()
        nan = bool(np.isnan(flat).any())
        if len(node) <= CHUNK:
            return self._walk(flat, node, rows * X.shape[1], nan)
        leaves = np.empty_like(node)
        for start in range(0, len(node), CHUNK):
            part = slice(start, start + CHUNK)
            leaves[part] = self._walk(flat, node[part], rows[part] * X.shape[1], nan)
        return leaves

    def _walk(self, flat: Floats, node: Ints, base: Ints, nan: bool) -> Ints:
        for _ in range(self.depth):
            x = flat.take(base + self.feature.take(node))
            right = x > self.threshold.take(node)
            if nan:
                right |= np.isnan(x) & self.missing_right.take(node)
            node = self.children.take(2 * node + right)
        return node


def from_sklearn_trees(trees: Sequence[Any], width: int) -> TreeArrays:
    """``sklearn.tree._tree.Tree`` objects (a forest's or gradient boosting's), in order."""
    parts: list[tuple[Ints, Floats, Ints, Ints, Flags]] = []
    offset = 0
    roots = []
    for tree in trees:
        count = int(tree.node_count)
        local = np.arange(count, dtype=np.intp)
        leaf = np.asarray(tree.children_left) < 0
        left = np.where(leaf, local, tree.children_left).astype(np.intp) + offset
        right = np.where(leaf, local, tree.children_right).astype(np.intp) + offset
        feature = np.where(leaf, 0, tree.feature).astype(np.intp)
        threshold = np.where(leaf, np.inf, tree.threshold).astype(np.float64)
        missing_right = ~leaf & (np.asarray(tree.missing_go_to_left) == 0)
        parts.append((feature, threshold, left, right, missing_right))
        roots.append(offset)
        offset += count
    return _assemble(parts, np.asarray(roots, dtype=np.intp), width, None)


def from_hist_predictors(
    predictors: Sequence[Any], width: int, known: npt.NDArray[np.uint32], feature_map: Any
) -> TreeArrays:
    """Histogram boosting's ``TreePredictor`` objects, in order; ``known`` and
    ``feature_map`` are its bin mapper's known-categories bitsets and their index."""
    parts: list[tuple[Ints, Floats, Ints, Ints, Flags]] = []
    sources: list[int] = []
    goes_right: list[Flags] = []
    missing: list[bool] = []
    offset = 0
    roots = []
    for predictor in predictors:
        nodes = predictor.nodes
        count = len(nodes)
        local = np.arange(count, dtype=np.intp)
        leaf = nodes["is_leaf"].astype(bool)
        left = np.where(leaf, local, nodes["left"]).astype(np.intp) + offset
        right = np.where(leaf, local, nodes["right"]).astype(np.intp) + offset
        feature = np.where(leaf, 0, nodes["feature_idx"]).astype(np.intp)
        threshold = np.where(leaf, np.inf, nodes["num_threshold"]).astype(np.float64)
        missing_right = ~leaf & ~nodes["missing_go_to_left"].astype(bool)
        for i in np.flatnonzero(~leaf & nodes["is_categorical"].astype(bool)):
            source = int(nodes["feature_idx"][i])
            in_left = _bits(predictor.raw_left_cat_bitsets[nodes["bitset_idx"][i]])
            is_known = _bits(known[feature_map[source]])
            missing.append(bool(missing_right[i]))
            goes_right.append(~in_left & (is_known | missing[-1]))
            sources.append(source)
            feature[i] = width + len(sources) - 1  # its split column, 1.0 for right
            threshold[i] = 0.5
            missing_right[i] = False  # the column is never NaN
        parts.append((feature, threshold, left, right, missing_right))
        roots.append(offset)
        offset += count
    categorical = None
    if sources:
        categorical = CategoricalSplits(
            np.asarray(sources, dtype=np.intp), np.stack(goes_right), np.asarray(missing)
        )
    return _assemble(parts, np.asarray(roots, dtype=np.intp), width, categorical)


def _bits(words: npt.NDArray[np.uint32]) -> Flags:
    """A scikit-learn bitset (8 uint32 words) as 256 flags: code c is bit c % 32 of word c // 32."""
    shifts = np.arange(32, dtype=np.uint32)
    return ((np.asarray(words, dtype=np.uint32)[:, None] >> shifts) & 1).astype(bool).ravel()


def _assemble(
    parts: list[tuple[Ints, Floats, Ints, Ints, Flags]],
    roots: Ints,
    width: int,
    categorical: CategoricalSplits | None,
) -> TreeArrays:
    feature, threshold, left, right, missing_right = (
        np.concatenate([p[i] for p in parts]) for i in range(5)
    )
    return TreeArrays(
        feature=np.ascontiguousarray(feature, dtype=np.intp),
        threshold=np.ascontiguousarray(threshold, dtype=np.float64),
        left=np.ascontiguousarray(left, dtype=np.intp),
        right=np.ascontiguousarray(right, dtype=np.intp),
        missing_right=np.ascontiguousarray(missing_right, dtype=bool),
        roots=roots,
        depth=_depth(left, right, roots),
        width=width,
        children=np.stack([left, right], axis=1).ravel().astype(np.intp),
        categorical=categorical,
    )


def _depth(left: Ints, right: Ints, roots: Ints) -> int:
    """The longest root-to-leaf path, in splits."""
    depth = 0
    frontier = roots
    while True:
        inner = frontier[left.take(frontier) != frontier]
        if not len(inner):
            return depth
        frontier = np.concatenate([left.take(inner), right.take(inner)])
        depth += 1
