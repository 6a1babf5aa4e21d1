"""Property tests: any JSON value (or bytes) gives a matrix or a 4xx RequestError, nothing else."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.api.codecs.body import decode_json
from app.api.codecs.v1 import decode_instances
from app.api.codecs.v2 import V2_STATUS, decode_infer_request
from app.api.errors import STATUS
from app.errors import RequestError
from app.registry.metadata import FeatureSpec
from app.serving.contract import InputContract

FEATURES = ["a", "b", "c"]
CONTRACT = InputContract([FeatureSpec(name=n) for n in FEATURES])
MAX_BATCH = 50

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=6) | st.sampled_from(FEATURES), children, max_size=5)
    ),
    max_leaves=40,
)
numbers = st.integers(min_value=-(2**70), max_value=2**70) | st.floats()
# Payloads close to valid ones, so the deeper checks are reached, not only the first.
rows = st.lists(numbers | scalars, min_size=0, max_size=5)
named_rows = st.dictionaries(st.sampled_from([*FEATURES, "x", "é"]), numbers | scalars, max_size=5)
near_valid = st.fixed_dictionaries(
    {"instances": st.lists(rows | named_rows | json_values, max_size=6) | json_values}
)
tensor = st.fixed_dictionaries(
    {
        "name": st.sampled_from([*FEATURES, "input-0", ""]) | json_values,
        "shape": st.lists(st.integers(min_value=-2, max_value=6), max_size=3) | json_values,
        "datatype": st.sampled_from(["FP32", "FP64", "INT64", "BYTES", "BOOL"]) | json_values,
        "data": st.lists(numbers | rows | json_values, max_size=12) | json_values,
    }
)
near_valid_v2 = st.fixed_dictionaries(
    {"inputs": st.lists(tensor, max_size=4) | json_values},
    optional={"outputs": json_values, "id": json_values},
)


def _check_matrix(matrix: Any) -> None:
    assert isinstance(matrix, np.ndarray)
    assert matrix.dtype == np.float64
    assert matrix.ndim == 2 and matrix.shape[1] == len(FEATURES)
    assert 1 <= matrix.shape[0] <= MAX_BATCH
    assert np.isfinite(matrix).all()


def _check_error(exc: RequestError) -> None:
    assert 400 <= STATUS[exc.reason] < 500
    assert 400 <= V2_STATUS[exc.reason] < 500
    assert exc.field, "every parser error names a field"
    assert exc.message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, near_valid))
def test_parse_instances_gives_a_matrix_or_a_4xx(payload: Any) -> None:
    try:
        matrix = decode_instances(payload, CONTRACT, MAX_BATCH)
    except RequestError as exc:
        _check_error(exc)
    else:
        _check_matrix(matrix)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_decode_json_gives_a_value_or_a_400(body: bytes) -> None:
    try:
        decode_json(body)
    except RequestError as exc:
        assert STATUS[exc.reason] == 400
        assert exc.field == "body"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,  # deeper than both parsers' recursion limits
        b'{"instances": [[' + b"9" * 5000 + b", 1, 2]]}",  # more digits than int() accepts
        b'{"instances": [[1e400, 1, 2]]}',
        b'{"instances": [[NaN, Infinity, -Infinity]]}',
        '{"instances": [{"a": 1, "b": 2, "\u00e9\u6f22\U0001f600": 3}]}'.encode(),
        b"\xff\xfe\x00",
    ],
    ids=["deep", "huge-int", "1e400", "nan", "unicode-name", "not-utf8"],
)
def test_hostile_bodies_become_4xx(body: bytes) -> None:
    with pytest.raises(RequestError) as caught:
        decode_instances(decode_json(body), CONTRACT, MAX_BATCH)
    _check_error(caught.value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, near_valid_v2), st.booleans())
def test_v2_parser_gives_a_matrix_or_a_4xx(payload: Any, has_proba: bool) -> None:
    try:
        request = decode_infer_request(payload, CONTRACT, MAX_BATCH, has_proba)
    except RequestError as exc:
        _check_error(exc)
    else:
        _check_matrix(request.rows)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(
            st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=3, max_size=3
        ),
        min_size=1,
        max_size=MAX_BATCH,
    )
)
def test_valid_rows_round_trip_exactly(values: list[list[float]]) -> None:
    """Both parsers agree with each other and with the numbers sent, through real JSON."""
    body = orjson.dumps({"instances": values})
    matrix = decode_instances(decode_json(body), CONTRACT, MAX_BATCH)
    flat = [v for row in values for v in row]
    v2 = decode_infer_request(
        {"inputs": [{"name": "x", "shape": [len(values), 3], "datatype": "FP64", "data": flat}]},
        CONTRACT,
        MAX_BATCH,
        True,
    )
    np.testing.assert_array_equal(matrix, np.asarray(values, dtype=np.float64))
    np.testing.assert_array_equal(v2.rows, matrix)
