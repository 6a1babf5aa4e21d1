"""Which original feature each column of a pipeline's transformed input comes from.

A linear model or a tree after a ``ColumnTransformer`` sees one-hot columns, scaled numbers,
imputed values; contributions are given per original feature, each the sum of its columns'.
The mapping is traced at build time, not read from the transformers' types: each feature of a
few of the version's own rows is set to each of its values (its categories, missing where
nullable, a spread of the background's numbers) and the columns that move are that
feature's. A column that moves with two features (an interaction, PCA) cannot be given to one,
and the version is refused; a column that moves with none is an orphan, and a row whose
orphan columns contribute is refused (``ColumnMap.orphan_row``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from app.registry.metadata import FeatureSpec, Value
from app.serving.explain.result import Matrix, NotExplainableError

BASE_ROWS = 8
NUMBER_VALUES = 12
Transform = Callable[[list[list[Value]]], Matrix]  # records -> the transformed float matrix


@dataclass(frozen=True)
class ColumnMap:
    """Per original feature the transformed columns it owns (``None``: one column each)."""

    groups: list[npt.NDArray[np.intp]] | None
    orphans: npt.NDArray[np.intp]

    def fold(self, values: Matrix) -> Matrix:
        """(n, columns, outputs) -> (n, features, outputs): each feature's columns summed."""
        if self.groups is None:
            return values
        return np.stack([values[:, cols, :].sum(axis=1) for cols in self.groups], axis=1)

    def orphan_row(self, values: Matrix) -> int | None:
        """The first row with a non-zero contribution on a column traced to no feature."""
        if not self.orphans.size:
            return None
        moved = np.any(values[:, self.orphans, :] != 0, axis=(1, 2))
        return int(np.argmax(moved)) if moved.any() else None


def identity() -> ColumnMap:
    return ColumnMap(None, np.empty(0, dtype=np.intp))


def _key(value: Value) -> tuple[str, str]:
    return type(value).__name__, repr(value)


def _spread(numbers: list[Any]) -> list[Value]:
    """Up to ``NUMBER_VALUES`` of the values, spread over their range, and one past each end
    (a single row's value must move too)."""
    distinct = sorted({v for v in numbers if v is not None})
    if not distinct:
        return []
    if len(distinct) > NUMBER_VALUES:
        picks = np.linspace(0, len(distinct) - 1, NUMBER_VALUES).round().astype(int)
        distinct = [distinct[i] for i in picks]
    return [distinct[0] - 1, *distinct, distinct[-1] + 1]


def probe_values(spec: FeatureSpec, seen: Sequence[Value]) -> list[Value]:
    """The values feature ``spec`` is set to: its categories and the rows' own values."""
    if spec.kind == "string":
        values: list[Value] = [*(spec.categories or []), *seen]
    elif spec.kind == "boolean":
        values = [False, True]
    else:
        values = _spread(list(seen))
    if spec.nullable:
        values.append(None)
    unique: dict[tuple[str, str], Value] = {}
    for value in values:
        unique.setdefault(_key(value), value)
    return list(unique.values())


def _same(a: Matrix, b: Matrix) -> npt.NDArray[np.bool_]:
    same: npt.NDArray[np.bool_] = (a == b) | (np.isnan(a) & np.isnan(b))
    return same


def _moved(
    transform: Transform, base: list[list[Value]], reference: Matrix, j: int, values: list[Value]
) -> npt.NDArray[np.bool_]:
    """The columns that change when feature ``j`` of the base rows takes each of ``values``:
    one call for all of them, or one per value if a value is refused (handle_unknown="error")."""
    tries = [values, *([v] for v in values)] if len(values) > 1 else [values]
    moved = np.zeros(reference.shape[1], dtype=bool)
    for batch in tries:
        rows = [[*row[:j], value, *row[j + 1 :]] for value in batch for row in base]
        try:
            changed = transform(rows)
        except Exception:  # noqa: S112 - a value the transformer refuses moves nothing
            continue
        tiled = np.tile(reference, (len(batch), 1))
        moved |= ~_same(changed, tiled).all(axis=0)
        if batch is values:
            break
    return moved


def trace(
    transform: Transform, features: Sequence[FeatureSpec], rows: list[list[Value]]
) -> ColumnMap:
    """The feature each transformed column depends on, from ``rows`` (the background)."""
    step = max(1, len(rows) // BASE_ROWS)
    base = [list(row) for row in rows[::step][:BASE_ROWS]]
    reference = transform(base)
    owners: list[set[int]] = [set() for _ in range(reference.shape[1])]
    for j, spec in enumerate(features):
        values = probe_values(spec, [row[j] for row in rows])
        for column in np.flatnonzero(_moved(transform, base, reference, j, values)):
            owners[column].add(j)
    mixed = [(c, sorted(o)) for c, o in enumerate(owners) if len(o) > 1]
    if mixed:
        first, found = mixed[0]
        names = " and ".join(repr(features[j].name) for j in found[:3])
        raise NotExplainableError(
            f"column {first} of the pipeline's transformed input depends on {names} at once "
            "(an interaction, a projection): its contribution belongs to no single feature"
        )
    groups = [
        np.asarray([c for c, o in enumerate(owners) if o == {j}], dtype=np.intp)
        for j in range(len(features))
    ]
    orphans = np.asarray([c for c, o in enumerate(owners) if not o], dtype=np.intp)
    return ColumnMap(groups, orphans)
