"""The prediction log's rows between the request path and the store.

``submit()`` keeps a request's answers and inputs as they are (an ``Entry``). At each flush
``pack()`` stacks consecutive entries of one model version into a ``Batch``: one array per
column where the arrays stack without changing a value, so that handing a flush's rows to the
writer process costs one pickle of a few arrays, not one per request. ``serialize()`` turns a
batch into the rows the backends store: inputs and outputs as JSON text, exactly as they would
be from each entry alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from app.monitoring.records import PredictionRow
from app.results import InferenceResult


@dataclass(frozen=True)
class Entry:
    time: float
    result: InferenceResult
    rows: Any  # a float64 matrix, typed rows' values as sent, an object matrix or a DataFrame
    size: int = 0  # entry_bytes(): what it counts against the buffer's bound


@dataclass(frozen=True)
class Batch:
    model: str
    version: str
    ids: list[str]
    times: list[float]
    predictions: npt.NDArray[Any]
    probabilities: npt.NDArray[Any] | None
    inputs: npt.NDArray[Any] | list[list[Any]]  # a numeric matrix, or JSON-ready rows


def pack(entries: Sequence[Entry]) -> list[Batch]:
    """The entries as batches, in order: a run of entries whose columns stack is one batch."""
    batches: list[Batch] = []
    run: list[Entry] = []
    key: tuple[Any, ...] = ()
    for entry in entries:
        entry_key = _key(entry)
        if run and entry_key != key:
            batches.append(_stack(run))
            run = []
        run.append(entry)
        key = entry_key
    if run:
        batches.append(_stack(run))
    return batches


def serialize(batch: Batch) -> list[PredictionRow]:
    """The batch's rows as stored: (id, time, model, version, inputs JSON, output JSON)."""
    inputs = batch.inputs.tolist() if isinstance(batch.inputs, np.ndarray) else batch.inputs
    return [
        (
            pid,
            at,
            batch.model,
            batch.version,
            orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
            output,
        )
        for pid, at, row, output in zip(
            batch.ids,
            batch.times,
            inputs,
            encode_outputs(batch.predictions, batch.probabilities),
            strict=True,
        )
    ]


def encode_outputs(
    predictions: npt.NDArray[Any], probabilities: npt.NDArray[Any] | None
) -> list[str]:
    """Each row's ``output`` column: its prediction and probabilities as JSON."""
    preds = predictions.tolist()
    proba_rows = probabilities.tolist() if probabilities is not None else [None] * len(preds)
    return [
        orjson.dumps({"prediction": pred, "probabilities": p}).decode()
        for pred, p in zip(preds, proba_rows, strict=True)
    ]


def _numeric(rows: Any) -> bool:
    return isinstance(rows, np.ndarray) and rows.dtype != object and rows.ndim == 2


def _like(array: npt.NDArray[Any] | None) -> tuple[Any, ...] | None:
    """What two arrays must share to stack with every value as it was: the dtype (strings of
    any length stack as they are), the shape after the first axis."""
    if array is None:
        return None
    dtype = array.dtype
    return (dtype.kind if dtype.kind in "US" else dtype), array.shape[1:]


def _key(entry: Entry) -> tuple[Any, ...]:
    # Once per entry per flush, holding the GIL: attribute reads only (a dtype's .str costs
    # more than the rest of the key).
    result, rows = entry.result, entry.rows
    inputs = (rows.dtype, rows.shape[1:]) if _numeric(rows) else None
    return (
        result.model,
        result.version,
        _like(result.predictions),
        _like(result.probabilities),
        inputs,
    )


def _stack(run: list[Entry]) -> Batch:
    first = run[0].result
    ids = [pid for entry in run for pid in entry.result.prediction_ids]
    times = [entry.time for entry in run for _ in entry.result.prediction_ids]
    predictions = _concat([entry.result.predictions for entry in run])
    probabilities = (
        None
        if first.probabilities is None
        else _concat([entry.result.probabilities for entry in run])  # type: ignore[misc]
    )
    inputs: npt.NDArray[Any] | list[list[Any]]
    if _numeric(run[0].rows):
        inputs = _concat([entry.rows for entry in run])
    else:
        inputs = [row for entry in run for row in _rows(entry.rows)]
    return Batch(first.model, first.version, ids, times, predictions, probabilities, inputs)


def _concat(arrays: list[npt.NDArray[Any]]) -> npt.NDArray[Any]:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _rows(rows: Any) -> list[list[Any]]:
    """Inputs in feature order as JSON-ready lists (typed values kept; missing as null)."""
    if isinstance(rows, list):  # typed rows, as sent (missing values already None)
        return rows
    if isinstance(rows, np.ndarray) and rows.dtype != object:
        return list(rows.tolist())
    table = np.asarray(rows, dtype=object)
    return [[None if _missing(v) else v for v in row] for row in table.tolist()]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)
