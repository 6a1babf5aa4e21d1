"""The compiled form of one fitted transforming step, with scikit-learn's arithmetic.

Two shapes of step: an encoder reads string features (a typed request's checked values) and
writes a float64 block; a numeric step maps a float64 matrix to another, column by column.

- ``OneHotEncoder`` (``drop=None``, no infrequent categories, ``handle_unknown`` ``ignore``,
  ``error`` or ``infrequent_if_exist``, which without infrequent categories is ``ignore``):
  1.0 in the column of the value's category, zeros for an ignored unknown value;
- ``OrdinalEncoder`` (no infrequent categories): the category's index as a float,
  ``encoded_missing_value`` and ``unknown_value`` where scikit-learn puts them;
- ``StandardScaler``: ``x - mean_`` then ``/ scale_``, as its ``transform`` does in place;
- ``SimpleImputer`` (numeric strategies, ``missing_values=nan``, no indicator): each
  column's missing values replaced by its statistic, cast as scikit-learn casts it;
- ``"passthrough"`` (a ``FunctionTransformer`` without a function): the matrix as it is.

A missing string is a category only where the encoder learnt NaN as one (its last category).
A value the encoder refuses (an unknown category under ``handle_unknown="error"``) raises
``DeclinedError``: the call goes to scikit-learn, whose own error the client gets. Anything else
raises ``NotCompiledError`` at compile time, naming why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

from app.serving.treearrays import Floats
from app.serving.treescore import NotCompiledError

Encode = Callable[[Sequence[Sequence[Any]]], Floats]  # string columns -> float64 block
NumericOp = Callable[[Floats], Floats]
ENCODERS = (OneHotEncoder, OrdinalEncoder)


class DeclinedError(Exception):
    """A value the compiled step does not answer for: scikit-learn's call takes the rows."""


def is_passthrough(step: Any) -> bool:
    if isinstance(step, str):
        return step == "passthrough"
    return type(step) is FunctionTransformer and step.func is None and not step.validate


def encoder(step: Any) -> tuple[Encode, int]:
    """An encoder's compiled form and its output width."""
    if type(step) not in ENCODERS:
        raise NotCompiledError(f"{type(step).__name__} is not a compiled step")
    if getattr(step, "_infrequent_enabled", False):
        raise NotCompiledError(f"{type(step).__name__} with infrequent categories")
    if step.dtype is not np.float64 and np.dtype(step.dtype) != np.float64:
        raise NotCompiledError(f"{type(step).__name__} with dtype {step.dtype}")
    tables = [_codes(categories) for categories in step.categories_]
    if type(step) is OneHotEncoder:
        return _one_hot(step, tables)
    return _ordinal(step, tables), len(tables)


def _codes(categories: Any) -> tuple[dict[str, int], int]:
    """A category's index by value (strings only), and the index of NaN (-1: none)."""
    table: dict[str, int] = {}
    missing = -1
    for index, value in enumerate(categories.tolist()):
        if type(value) is str:
            table[value] = index
        elif type(value) is float and math.isnan(value):
            missing = index
        elif value is not None:  # a number or a None category: not a string encoder
            raise NotCompiledError(f"its categories hold {type(value).__name__} values")
    return table, missing


def _column_codes(values: Sequence[Any], table: tuple[dict[str, int], int]) -> list[int]:
    """Each value's category index; -1 for a value outside the categories."""
    codes, missing = table
    get = codes.get
    return [missing if v is None else get(v, -1) for v in values]


def _one_hot(step: Any, tables: list[tuple[dict[str, int], int]]) -> tuple[Encode, int]:
    if step.drop is not None:
        raise NotCompiledError(f"OneHotEncoder with drop={step.drop!r}")
    if step.handle_unknown not in ("ignore", "error", "infrequent_if_exist"):
        raise NotCompiledError(f"OneHotEncoder with handle_unknown={step.handle_unknown!r}")
    refuse = step.handle_unknown == "error"
    offsets = np.cumsum([0] + [len(c) for c in step.categories_]).tolist()
    width = int(offsets[-1])

    def encode(columns: Sequence[Sequence[Any]]) -> Floats:
        n = len(columns[0])
        out = np.zeros((n, width), dtype=np.float64)
        for values, table, offset in zip(columns, tables, offsets[:-1], strict=True):
            codes = np.asarray(_column_codes(values, table), dtype=np.intp)
            known = codes >= 0
            if refuse and not known.all():
                raise DeclinedError("an unknown category")
            rows = np.flatnonzero(known)
            out[rows, codes[rows] + offset] = 1.0
        return out

    return encode, width


def _ordinal(step: Any, tables: list[tuple[dict[str, int], int]]) -> Encode:
    refuse = step.handle_unknown == "error"
    unknown_value = float(step.unknown_value) if not refuse else 0.0
    missing_value = float(step.encoded_missing_value)
    replaced = dict(step._missing_indices)  # column -> its NaN category's index

    def encode(columns: Sequence[Sequence[Any]]) -> Floats:
        out = np.empty((len(columns[0]), len(columns)), dtype=np.float64)
        for j, (values, table) in enumerate(zip(columns, tables, strict=True)):
            codes = np.asarray(_column_codes(values, table), dtype=np.intp)
            unknown = codes < 0
            if refuse and unknown.any():
                raise DeclinedError("an unknown category")
            out[:, j] = codes
            if j in replaced:
                out[codes == replaced[j], j] = missing_value
            out[unknown, j] = unknown_value
        return out

    return encode


def numeric(step: Any, width: int) -> tuple[NumericOp, bool]:
    """A numeric step's compiled form, and whether its output is float64 whatever its input."""
    if is_passthrough(step):
        return (lambda X: X), False
    if int(getattr(step, "n_features_in_", -1)) != width:
        raise NotCompiledError(f"{type(step).__name__} takes another number of columns")
    if type(step) is StandardScaler:
        return _scaler(step), True
    if type(step) is SimpleImputer:
        return _imputer(step)
    raise NotCompiledError(f"{type(step).__name__} is not a compiled step")


def _scaler(step: Any) -> NumericOp:
    mean = np.asarray(step.mean_, dtype=np.float64) if step.with_mean else None
    scale = np.asarray(step.scale_, dtype=np.float64) if step.with_std else None

    def scaled(X: Floats) -> Floats:
        out = np.array(X, dtype=np.float64)
        if mean is not None:
            out -= mean
        if scale is not None:
            out /= scale
        return out

    return scaled


def _imputer(step: Any) -> tuple[NumericOp, bool]:
    missing = step.missing_values
    if not (isinstance(missing, float) and math.isnan(missing)):
        raise NotCompiledError(f"SimpleImputer with missing_values={missing!r}")
    if step.add_indicator:
        raise NotCompiledError("SimpleImputer with add_indicator")
    if step.strategy not in ("mean", "median", "most_frequent", "constant"):
        raise NotCompiledError(f"SimpleImputer with strategy={step.strategy!r}")
    if np.dtype(step._fill_dtype).kind not in "fiub":  # the dtype it was fitted on
        raise NotCompiledError("SimpleImputer of non-numeric values")
    statistics = np.asarray(step.statistics_)
    if not step.keep_empty_features and np.isnan(statistics.astype(np.float64)).any():
        raise NotCompiledError("SimpleImputer that drops a column it never saw a value of")
    fill = statistics.astype(step._fill_dtype).astype(np.float64)  # cast as its transform

    def imputed(X: Floats) -> Floats:
        holes = np.isnan(X)
        if not holes.any():
            return X
        out = np.array(X, dtype=np.float64)
        out[holes] = np.broadcast_to(fill, X.shape)[holes]
        return out

    return imputed, step.strategy in ("mean", "median")
