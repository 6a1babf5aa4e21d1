"""Typed rows stay checked values until the model call: a batch becomes one model input with
the dtypes a concatenation of each request's own input would have, and splits back exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.registry.metadata import FeatureSpec, InputFormat
from app.serving.contract import InputContract, TypedRows, concat, model_input, split_rows

FEATURES = [
    FeatureSpec(name="plan", dtype="object", kind="string", nullable=True, categories=["a", "b"]),
    FeatureSpec(name="seats", dtype="int64", kind="integer", nullable=True),
    FeatureSpec(name="autopay", dtype="bool", kind="boolean", nullable=True),
    FeatureSpec(name="fee"),
]
REQUESTS: list[list[list[object]]] = [
    [["a", 3, True, 1.5]],
    [["b", None, False, 2], [None, 7, True, 0.25]],  # a missing int, a missing string
    [["a", 1, None, 3.0]],  # a missing boolean
]


@pytest.mark.parametrize("input_format", ["frame", "array"])
def test_a_batch_is_one_input_with_the_dtypes_of_its_parts_concatenated(
    input_format: InputFormat,
) -> None:
    contract = InputContract(FEATURES, input_format)
    parts = [contract.records([list(r) for r in rows]) for rows in REQUESTS]
    assert all(isinstance(p, TypedRows) for p in parts)
    merged = concat(parts)
    assert len(merged) == 4
    built = model_input(merged)
    each = [model_input(p) for p in parts]
    if input_format == "frame":
        assert isinstance(built, pd.DataFrame)
        frames = [f for f in each if isinstance(f, pd.DataFrame)]
        pd.testing.assert_frame_equal(built, pd.concat(frames, ignore_index=True))  # and dtypes
        # A missing integer makes the batch's column float64, a missing boolean object.
        assert str(built["seats"].dtype) == "float64" and str(built["autopay"].dtype) == "object"
    else:
        assert isinstance(built, np.ndarray) and built.dtype == object
        assert built.shape == (4, 4)
        assert pd.isna(built[1, 1]) and pd.isna(built[2, 0]) and pd.isna(built[3, 2])
    # Split back: each request's rows, as it sent them.
    back = split_rows(merged, [len(p) for p in parts])
    assert [b.cells for b in back if isinstance(b, TypedRows)] == [p.cells for p in parts]  # type: ignore[union-attr]


def test_typed_rows_keep_the_values_as_sent() -> None:
    rows = InputContract(FEATURES, "frame").records(
        [{"plan": "a", "seats": 3, "autopay": True, "fee": 2}]
    )
    assert isinstance(rows, TypedRows)
    assert rows.cells == [["a", 3, True, 2]]  # the integer 2 of a number feature stays 2
    assert model_input(rows)["fee"].tolist() == [2.0]  # the model gets the training dtype


def test_typed_rows_never_merge_with_a_matrix() -> None:
    typed = InputContract(FEATURES, "frame").records([list(REQUESTS[0][0])])
    with pytest.raises(TypeError):
        concat([typed, np.zeros((1, 4))])
