"""A compiled tree ensemble made wrong on purpose, for the tests of the load-time probe."""

from __future__ import annotations

import dataclasses

import numpy as np

from app.serving.treescore import CompiledEnsemble


def one_leaf_off(compiled: CompiledEnsemble) -> CompiledEnsemble:
    """The same compiled ensemble with one leaf of one tree off by one unit in the last place."""
    arrays = compiled.arrays
    last = arrays.n_trees - 1
    leaves = np.flatnonzero(arrays.left == np.arange(len(arrays.left)))
    leaf = int(leaves[leaves >= arrays.roots[last]][0])
    table = compiled.table.copy()
    table[leaf, 0] = np.nextafter(table[leaf, 0], np.inf)
    return dataclasses.replace(compiled, table=table)
