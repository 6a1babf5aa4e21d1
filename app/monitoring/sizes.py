"""How much memory a prediction-log entry holds, estimated cheaply as it is submitted: the
buffer's byte bound (``MODELSERVE_PREDICTION_LOG_BUFFER_BYTES``) counts it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from app.results import InferenceResult

# What ``entry_bytes`` charges besides the arrays' own bytes (CPython, 64-bit).
ENTRY_BYTES = 400  # the entry, its result and their headers
ROW_BYTES = 160  # per row: its id (a 32-character str: 81 bytes, and its list slot), its list
VALUE_BYTES = 32  # per value held as a Python object: the object (a float: 24) and its slot


def entry_bytes(result: InferenceResult, rows: Any) -> int:
    """A cheap estimate of the memory a buffered entry holds, for the buffer's byte bound.

    The answers' arrays by their ``nbytes``, a constant per entry and per row, and the inputs:
    a numeric matrix by its ``nbytes``; typed rows (lists of values), an object matrix or a
    DataFrame's non-numeric columns at ``VALUE_BYTES`` per value plus each string's length (an
    ASCII string's bytes; other text at 4 bytes a character, the most CPython spends); a
    DataFrame's numeric columns by their ``nbytes``. Within a few percent of the objects' sizes
    for ASCII values (shared ones, ``None``, ``True``, small ints, counted as if they were
    not); up to 4x high for non-ASCII text, which CPython stores in 1, 2 or 4 bytes a character.
    About 0.2 µs a row of eight typed values; constant time for a numeric matrix.
    """
    size = ENTRY_BYTES + ROW_BYTES * len(result.prediction_ids) + result.predictions.nbytes
    if result.probabilities is not None:
        size += result.probabilities.nbytes
    if isinstance(rows, np.ndarray):
        if rows.dtype != object:
            return size + rows.nbytes
        return size + _objects_bytes(rows.ravel().tolist())
    if isinstance(rows, list):  # typed rows: a list of lists of values
        values = sum(map(len, rows))
        return size + VALUE_BYTES * values + _text_bytes(v for row in rows for v in row)
    if isinstance(rows, pd.DataFrame):
        for _, column in rows.items():
            kind = column.dtype.kind
            size += column.nbytes if kind in "biufcmM" else _objects_bytes(column.tolist())
        return size
    return size + _objects_bytes(np.asarray(rows, dtype=object).ravel().tolist())


def _objects_bytes(values: list[Any]) -> int:
    return VALUE_BYTES * len(values) + _text_bytes(values)


def _text_bytes(values: Any) -> int:
    """The strings' characters: one byte each when ASCII (``isascii`` is O(1)), else four."""
    return sum(len(v) if v.isascii() else 4 * len(v) for v in values if type(v) is str)
