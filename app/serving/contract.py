"""A model's input contract: what rows it takes, and how a request's rows become model input.

Codecs decode a protocol's body into one of three neutral shapes and hand it here with the
path of the part they came from (``instances``, ``inputs[0]``), so every error names the exact
field in the client's own terms:

- records: rows as lists in feature order or objects keyed by feature name (/predict, /v1,
  /invocations, the CLI);
- a matrix: row-major values of shape ``(n, features)`` (one OIP v2 tensor);
- columns: one sequence of values per feature, by name (one OIP v2 tensor per feature).

The model receives what it was fitted on (``ModelMetadata.input_format``): a float64 matrix
for numeric array models (the fast path, unchanged), otherwise the typed columns of
``app.serving.typed`` as a DataFrame with the training names and dtypes, or an array. Typed
rows travel as ``TypedRows`` (their checked values) until the model call: a batch of requests
becomes one DataFrame (``model_input``), not one per request concatenated, which cost about
170 µs a request against 7 for the mixed bench model's eight columns.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from app.errors import ErrorReason, RequestError, clip, describe_value, quote
from app.registry.metadata import FeatureSpec, InputFormat
from app.serving import typed

# What a model call takes: a float64 matrix, an object matrix, or a DataFrame.
ModelInput = npt.NDArray[Any] | pd.DataFrame


@dataclass(frozen=True, eq=False)
class TypedRows:
    """Rows checked against their features (missing values as None), as the client sent them;
    built into the model's input only for the call."""

    features: tuple[FeatureSpec, ...]
    input_format: InputFormat
    cells: list[list[Any]]

    def __len__(self) -> int:
        return len(self.cells)

    def model_input(self) -> ModelInput:
        return typed.model_input(self.features, self.cells, self.input_format)


# A request's rows: a float64 matrix (numeric models), or typed rows.
Rows = npt.NDArray[Any] | pd.DataFrame | TypedRows


def model_input(rows: Rows) -> ModelInput:
    """What the model is called with for ``rows``."""
    return rows.model_input() if isinstance(rows, TypedRows) else rows


@dataclass(frozen=True)
class Column:
    """One feature's values from a column-wise request; ``field`` is where they came from."""

    field: str
    name: str
    values: Sequence[Any]


def _invalid(reason: ErrorReason, field: str, message: str) -> RequestError:
    return RequestError(reason, message, field=field)


def _is_number(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        return True
    return kind is int and abs(value) < typed.INT_LIMIT


def _some(names: Sequence[str]) -> str:
    """The first five names, each cut (a client's unknown key may be a megabyte)."""
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return ", ".join(clip(str(n)) for n in names[:5]) + more


def concat(parts: Sequence[Rows]) -> Rows:
    """Several requests' rows as one (the batcher's merge): typed rows stay typed rows."""
    typed_parts = [p for p in parts if isinstance(p, TypedRows)]
    if typed_parts:
        if len(typed_parts) != len(parts):  # one model's contract gives one kind of rows
            raise TypeError("typed rows merge only with typed rows")
        cells = [row for part in typed_parts for row in part.cells]
        return TypedRows(typed_parts[0].features, typed_parts[0].input_format, cells)
    frames = [p for p in parts if isinstance(p, pd.DataFrame)]
    if frames:
        return pd.concat(frames, ignore_index=True)
    return np.concatenate([p for p in parts if isinstance(p, np.ndarray)])


def split_rows(rows: Rows, sizes: Sequence[int]) -> list[Rows]:
    """``concat``'s inverse: consecutive parts of ``sizes`` rows (each frame indexed from 0)."""
    parts: list[Rows] = []
    start = 0
    for size in sizes:
        if isinstance(rows, TypedRows):
            cells = rows.cells[start : start + size]
            parts.append(TypedRows(rows.features, rows.input_format, cells))
        elif isinstance(rows, pd.DataFrame):
            parts.append(rows.iloc[start : start + size].reset_index(drop=True))
        else:
            parts.append(rows[start : start + size])
        start += size
    return parts


class InputContract:
    """The features a model version takes, in order, and the form it takes them in; a string
    value longer than ``max_string_length`` characters is refused naming its feature."""

    def __init__(
        self,
        features: Sequence[FeatureSpec],
        input_format: InputFormat = "array",
        max_string_length: int | None = None,
    ) -> None:
        self.features = tuple(features)
        self.max_string_length = sys.maxsize if max_string_length is None else max_string_length
        self.feature_names = [f.name for f in self.features]
        self.width = len(self.features)
        self.input_format = input_format
        self._names = frozenset(self.feature_names)
        # Numbers only, no missing values, fitted on an array: today's float64 fast path.
        self.numeric = input_format == "array" and all(
            f.kind == "number" and not f.nullable for f in self.features
        )

    # ---- records: /predict, /v1, /invocations, the CLI -----------------------------------

    def records(self, instances: Sequence[Any], path: str = "instances") -> Rows:
        """Rows as lists or named objects; an error names ``path[i][j]`` or ``path[i].name``."""
        rows = [self._record(instance, i, path) for i, instance in enumerate(instances)]
        if not self.numeric:
            return self._typed(rows, lambda i, j: self._field(path, i, instances[i], j))
        matrix = np.asarray(rows, dtype=np.float64)
        if not np.isfinite(matrix).all():
            i, j = (int(k) for k in np.argwhere(~np.isfinite(matrix))[0])
            where = self._field(path, i, instances[i], j)
            raise _invalid(
                ErrorReason.INVALID_VALUE, where, f"must be a finite number, got {matrix[i, j]}"
            )
        return matrix

    def _record(self, instance: Any, i: int, path: str) -> list[Any]:
        if isinstance(instance, str) and self.input_format == "text":
            return [instance]  # a text model's row may be the text itself
        if isinstance(instance, list):
            return self._positional(instance, i, path)
        if isinstance(instance, dict):
            return self._named(instance, i, path)
        # describe_value() speaks of a bad *feature value*; here the whole row has the wrong shape.
        bare_number = isinstance(instance, int | float) and not isinstance(instance, bool)
        got = f"the number {instance!r}" if bare_number else describe_value(instance)
        text = "a string (the text), " if self.input_format == "text" else ""
        raise _invalid(
            ErrorReason.INVALID_REQUEST,
            f"{path}[{i}]",
            f"must be {text}a list of feature values or an object of feature values, got {got}",
        )

    def _positional(self, instance: list[Any], i: int, path: str) -> list[Any]:
        if len(instance) != self.width:
            raise _invalid(
                ErrorReason.INVALID_FEATURES,
                f"{path}[{i}]",
                f"expected {self.width} features, got {len(instance)}",
            )
        if self.numeric:
            for j, value in enumerate(instance):
                if not _is_number(value):
                    raise _invalid(
                        ErrorReason.INVALID_VALUE,
                        f"{path}[{i}][{j}]",
                        f"feature {self.feature_names[j]!r} must be a number, "
                        f"got {describe_value(value)}",
                    )
        return instance

    def _named(self, instance: dict[str, Any], i: int, path: str) -> list[Any]:
        missing = [n for n in self.feature_names if n not in instance]
        if missing:
            raise _invalid(
                ErrorReason.INVALID_FEATURES,
                f"{path}[{i}].{missing[0]}",
                f"missing feature(s): {_some(missing)}",
            )
        if len(instance) != self.width:
            unknown = [k for k in instance if k not in self._names]
            raise _invalid(
                ErrorReason.INVALID_FEATURES,
                f"{path}[{i}].{clip(unknown[0])}",
                f"unknown feature(s): {_some(unknown)}",
            )
        row = [instance[n] for n in self.feature_names]
        if self.numeric:
            for name, value in zip(self.feature_names, row, strict=True):
                if not _is_number(value):
                    raise _invalid(
                        ErrorReason.INVALID_VALUE,
                        f"{path}[{i}].{name}",
                        f"must be a number, got {describe_value(value)}",
                    )
        return row

    def _field(self, path: str, i: int, instance: Any, j: int) -> str:
        if isinstance(instance, str):
            return f"{path}[{i}]"
        if isinstance(instance, dict):
            return f"{path}[{i}].{self.feature_names[j]}"
        return f"{path}[{i}][{j}]"

    # ---- tensors: OIP v2 -----------------------------------------------------------------

    def matrix(self, values: Sequence[Any], shape: Sequence[int], field: str) -> Rows:
        """Row-major values of ``shape`` ``[n, features]``."""
        rows, columns = shape
        if columns != self.width:
            raise _invalid(
                ErrorReason.INVALID_FEATURES,
                f"{field}.shape",
                f"expected [N, {self.width}] (the model has {self.width} "
                f"features), got {list(shape)}",
            )
        if self.numeric:
            return np.asarray(values, dtype=np.float64).reshape(rows, columns)
        table = [list(values[r * columns : (r + 1) * columns]) for r in range(rows)]
        return self._typed(table, lambda i, j: f"{field}.data[{i * columns + j}]")

    def columns(self, columns: Sequence[Column], path: str = "inputs") -> Rows:
        """One column per feature, by name, stacked in feature order."""
        by_name: dict[str, Column] = {}
        for column in columns:
            if column.name not in self._names:
                raise _invalid(
                    ErrorReason.INVALID_FEATURES,
                    f"{column.field}.name",
                    f"{quote(column.name)} is not a feature of this model; send "
                    f"one [N, {self.width}] tensor, or one tensor per feature named after it",
                )
            if column.name in by_name:
                raise _invalid(
                    ErrorReason.INVALID_REQUEST,
                    f"{column.field}.name",
                    f"feature {column.name!r} given twice",
                )
            by_name[column.name] = column
        missing = [n for n in self.feature_names if n not in by_name]
        if missing:
            raise _invalid(
                ErrorReason.INVALID_FEATURES, path, f"missing feature(s): {_some(missing)}"
            )
        lengths = {len(c.values) for c in columns}
        if len(lengths) != 1:
            raise _invalid(
                ErrorReason.INVALID_REQUEST,
                path,
                f"feature columns differ in length: {sorted(lengths)}",
            )
        ordered = [by_name[n] for n in self.feature_names]
        if self.numeric:
            return np.asarray([c.values for c in ordered], dtype=np.float64).T.copy()
        table = [list(row) for row in zip(*(c.values for c in ordered), strict=True)]
        return self._typed(table, lambda i, j: f"{ordered[j].field}.data[{i}]")

    # ---- typed rows ----------------------------------------------------------------------

    def _typed(self, rows: list[list[Any]], field_of: typed.FieldOf) -> TypedRows:
        cells = typed.check_cells(self.features, rows, field_of, self.max_string_length)
        return TypedRows(self.features, self.input_format, cells)
