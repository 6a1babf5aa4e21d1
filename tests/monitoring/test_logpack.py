"""A flush's entries stacked into batches are stored exactly as each entry alone would be."""

from __future__ import annotations

import math
import pickle

import numpy as np
import orjson
import pandas as pd

from app.monitoring.logpack import Entry, pack, serialize
from app.monitoring.records import PredictionRow
from app.results import InferenceResult


def _entry(
    n: int,
    *,
    model: str = "m",
    version: str = "1",
    predictions: object = None,
    probabilities: object = None,
    rows: object = None,
    at: float = 1764633600.123456789,
) -> Entry:
    ids = [f"{model}-{version}-{at!r}-{i}" for i in range(n)]
    preds = np.asarray(predictions) if predictions is not None else np.arange(n) % 2
    proba = None if probabilities is None else np.asarray(probabilities)
    inputs = rows if rows is not None else np.random.default_rng(n).random((n, 3)) * 1e3
    return Entry(at, InferenceResult(model, version, preds, proba, ids), inputs)


def _alone(entries: list[Entry]) -> list[PredictionRow]:
    return [row for entry in entries for batch in pack([entry]) for row in serialize(batch)]


def _together(entries: list[Entry]) -> list[PredictionRow]:
    # Through a pickle, as the writer process gets them.
    batches = pickle.loads(pickle.dumps(pack(entries)))
    return [row for batch in batches for row in serialize(batch)]


def test_one_row_requests_of_one_model_are_one_batch_stored_as_each_alone() -> None:
    entries = [_entry(1, probabilities=[[0.25, 0.75]], at=1764633600.0 + i / 7) for i in range(200)]
    assert len(pack(entries)) == 1
    together = _together(entries)
    assert together == _alone(entries)
    assert [row[1] for row in together] == [entry.time for entry in entries]
    first = together[0]
    assert orjson.loads(first[4]) == entries[0].rows.tolist()[0]
    assert orjson.loads(first[5]) == {"prediction": 0, "probabilities": [0.25, 0.75]}


def test_entries_that_would_change_a_value_when_stacked_are_not_stacked() -> None:
    """Integers beside floats, float32 beside float64 inputs, another model or version, a
    missing probability column: each its own batch, and every value as sent."""
    entries = [
        _entry(2, predictions=[1, 2]),
        _entry(1, predictions=[0.1]),
        _entry(1, predictions=[3], rows=np.array([[0.1, 0.2, 0.3]], dtype=np.float32)),
        _entry(1, predictions=[4], rows=np.array([[0.1, 0.2, 0.3]])),
        _entry(1, version="2", predictions=[5]),
        _entry(1, model="other", predictions=[6]),
        _entry(2, predictions=[7, 8], probabilities=[[0.5, 0.5], [1.0, 0.0]]),
        _entry(1, predictions=[9], probabilities=[[0.5, 0.25, 0.25]]),
    ]
    assert len(pack(entries)) == len(entries)
    together = _together(entries)
    assert together == _alone(entries)
    outputs = [orjson.loads(row[5])["prediction"] for row in together]
    assert outputs == [1, 2, 0.1, 3, 4, 5, 6, 7, 8, 9]
    assert [type(v) for v in outputs] == [int, int, float, int, int, int, int, int, int, int]


def test_string_labels_of_any_length_stack_and_keep_their_text() -> None:
    entries = [
        _entry(1, predictions=["no"], probabilities=[[0.5, 0.5]]),
        _entry(2, predictions=["yes", "perhaps"], probabilities=[[0.1, 0.9], [0.2, 0.8]]),
        _entry(1, predictions=np.array(["日本語 😀"], dtype=object), probabilities=[[1.0, 0.0]]),
    ]
    together = _together(entries)
    assert together == _alone(entries)
    assert [orjson.loads(row[5])["prediction"] for row in together] == [
        "no",
        "yes",
        "perhaps",
        "日本語 😀",
    ]


def test_typed_rows_object_matrices_and_frames_are_stored_as_sent() -> None:
    frame = pd.DataFrame({"city": ["Paris", None], "age": [31.5, float("nan")]})
    entries = [
        _entry(1, rows=[["Lyon", 3, None, True]]),
        _entry(1, rows=[["Nice", 4.5, "x", False]]),
        _entry(2, rows=np.array([["a", 1.0], [None, math.nan]], dtype=object)),
        _entry(2, rows=frame),
    ]
    together = _together(entries)
    assert together == _alone(entries)
    assert [orjson.loads(row[4]) for row in together] == [
        ["Lyon", 3, None, True],
        ["Nice", 4.5, "x", False],
        ["a", 1.0],
        [None, None],
        ["Paris", 31.5],
        [None, None],
    ]


def test_floats_keep_every_bit() -> None:
    values = np.array([[5e-324, 1.7976931348623157e308, 0.1 + 0.2, -0.0, 1 / 3]])
    entries = [_entry(1, rows=values, probabilities=[[2.0**-60, 1 - 2.0**-53]]) for _ in range(3)]
    for row in _together(entries):
        assert np.array_equal(np.array([orjson.loads(row[4])]), values)
        assert orjson.loads(row[5])["probabilities"] == [2.0**-60, 1 - 2.0**-53]
