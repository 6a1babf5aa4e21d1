"""Typed rows: JSON values checked against each feature's kind, then built into model input.

A number feature takes JSON numbers, an integer feature whole numbers, a boolean feature
``true``/``false``, a string feature strings of at most ``max_string`` characters
(MODELSERVE_MAX_STRING_LENGTH: a client's megabyte never reaches the model, an error message
or the prediction log); ``null`` (and ``NaN``) only where the feature is nullable. Columns are
then built with the training column's dtype, so the model sees what it was fitted on: float64
with NaN for missing numbers, int64, bool, and object arrays of ``str`` (NaN where missing, as
pandas holds them) for strings. Unknown categories pass through: the fitted encoder decides
(``handle_unknown``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from app.errors import ErrorReason, RequestError, describe_value
from app.registry.metadata import FeatureSpec, InputFormat

FieldOf = Callable[[int, int], str]  # (row, feature index) -> the field an error names
INT_LIMIT = 2**63  # JSON integers beyond int64 are refused, not wrapped
_WANT = {
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "string": "a string",
}


def _accepts(spec: FeatureSpec, value: Any) -> bool:
    kind = type(value)
    if spec.kind == "string":
        return kind is str
    if spec.kind == "boolean":
        return kind is bool
    if kind is int:
        return bool(abs(value) < INT_LIMIT)
    if kind is not float:
        return False
    if spec.kind == "integer":
        return bool(value.is_integer() and abs(value) < INT_LIMIT)
    return math.isfinite(value)


def _is_missing(value: Any) -> bool:
    return value is None or (type(value) is float and math.isnan(value))


def check_cells(
    features: Sequence[FeatureSpec],
    rows: list[list[Any]],
    field_of: FieldOf,
    max_string: int = sys.maxsize,
) -> list[list[Any]]:
    """The rows' values checked per feature (missing values as None), strings at most
    ``max_string`` characters; RequestError naming the feature if not."""
    for i, row in enumerate(rows):
        for j, spec in enumerate(features):
            value = row[j]
            if _is_missing(value):
                if not spec.nullable:
                    raise RequestError(
                        ErrorReason.INVALID_VALUE,
                        f"feature {spec.name!r} must not be missing: it must be "
                        f"{_WANT[spec.kind]}, got {describe_value(value)}",
                        field=field_of(i, j),
                    )
                row[j] = None
            elif not _accepts(spec, value):
                got = f"{value}" if type(value) is float else describe_value(value)
                raise RequestError(
                    ErrorReason.INVALID_VALUE,
                    f"feature {spec.name!r} must be {_WANT[spec.kind]}, got {got}",
                    field=field_of(i, j),
                )
            elif spec.kind == "string" and len(value) > max_string:
                raise RequestError(
                    ErrorReason.INVALID_VALUE,
                    f"feature {spec.name!r} takes strings of at most {max_string} characters "
                    f"(MODELSERVE_MAX_STRING_LENGTH), got {describe_value(value)}",
                    field=field_of(i, j),
                )
    return rows


def column(spec: FeatureSpec, values: Sequence[Any]) -> npt.NDArray[Any]:
    """One feature's checked values as the dtype it was trained with."""
    has_missing = any(v is None for v in values)
    if spec.kind in ("number", "integer"):
        if spec.kind == "integer" and not has_missing and spec.dtype.startswith(("int", "uint")):
            return np.asarray(values, dtype=spec.dtype)
        return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    if spec.kind == "boolean" and not has_missing and spec.dtype == "bool":
        return np.asarray(values, dtype=bool)
    out = np.empty(len(values), dtype=object)
    # Missing strings and booleans as NaN: what pandas holds (read_csv, np.nan in a frame),
    # so an encoder fitted on such data sees the same missing value it was fitted with.
    out[:] = [np.nan if v is None else v for v in values]
    return out


def model_input(
    features: Sequence[FeatureSpec], rows: list[list[Any]], input_format: InputFormat
) -> npt.NDArray[Any] | pd.DataFrame:
    """Checked rows as the estimator's input: a DataFrame (frame), an array, or the texts
    (text: the one feature's strings, a 1-D object array, as a vectorizer takes them)."""
    by_feature = list(zip(*rows, strict=True)) if rows else [() for _ in features]
    columns = [column(spec, values) for spec, values in zip(features, by_feature, strict=True)]
    if input_format == "text":
        return columns[0]
    if input_format == "frame":
        return pd.DataFrame(
            {spec.name: col for spec, col in zip(features, columns, strict=True)}, copy=False
        )
    if all(col.dtype == np.float64 for col in columns):
        return np.column_stack(columns) if columns else np.empty((len(rows), 0))
    table = np.empty((len(rows), len(columns)), dtype=object)
    for j, col in enumerate(columns):
        table[:, j] = col
    return table


def default_row(features: Sequence[FeatureSpec]) -> list[Any]:
    """A row every feature accepts, for a smoke prediction when metadata has no example."""
    zero: dict[str, Any] = {"number": 0.0, "integer": 0, "boolean": False, "string": ""}
    return [
        (spec.categories[0] if spec.categories else zero["string"])
        if spec.kind == "string"
        else zero[spec.kind]
        for spec in features
    ]


def unknown_category(
    features: Sequence[FeatureSpec], rows: npt.NDArray[Any] | pd.DataFrame
) -> tuple[str, Any] | None:
    """The first (feature, value) of a string feature that training never saw, if any."""
    for j, spec in enumerate(features):
        if spec.kind != "string" or not spec.categories:
            continue
        known = set(spec.categories)
        values = rows[spec.name] if isinstance(rows, pd.DataFrame) else rows[:, j]
        for value in values:
            if isinstance(value, str) and value not in known:
                return spec.name, value
    return None
