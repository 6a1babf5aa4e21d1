"""The input contract refuses a string longer than its limit naming the feature, before any
model sees it, and quotes every client value it refuses cut to a bounded length (issue #26)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.errors import ErrorReason, RequestError
from app.registry.metadata import FeatureSpec
from app.serving.contract import Column, InputContract, TypedRows

LIMIT = 16
FEATURES = [
    FeatureSpec(name="plan", dtype="object", kind="string", nullable=True, categories=["a", "b"]),
    FeatureSpec(name="seats", dtype="int64", kind="integer"),
    FeatureSpec(name="fee"),
]
MB = 1024 * 1024
BIG = "y" * MB
TYPED = InputContract(FEATURES, "frame", max_string_length=LIMIT)
NUMERIC = InputContract([FeatureSpec(name="a"), FeatureSpec(name="b")], "array", LIMIT)
# What each shape of request becomes when one value is ``value`` (plan's, or seats' at j=1).
Send = Callable[[Any, int], Any]
SHAPES: dict[str, Send] = {
    "records by name": lambda v, j: TYPED.records(
        [dict(zip(["plan", "seats", "fee"], _row(v, j), strict=True))]
    ),
    "records by position": lambda v, j: TYPED.records([_row(v, j)]),
    "a matrix": lambda v, j: TYPED.matrix(_row(v, j), [1, 3], "inputs[0]"),
    "columns": lambda v, j: TYPED.columns(
        [
            Column(f"inputs[{k}]", n, [x])
            for k, (n, x) in enumerate(zip(["plan", "seats", "fee"], _row(v, j), strict=True))
        ]
    ),
}
FIELDS = {
    "records by name": ("instances[0].plan", "instances[0].seats"),
    "records by position": ("instances[0][0]", "instances[0][1]"),
    "a matrix": ("inputs[0].data[0]", "inputs[0].data[1]"),
    "columns": ("inputs[0].data[0]", "inputs[1].data[0]"),
}


def _row(value: Any, j: int) -> list[Any]:
    row: list[Any] = ["a", 3, 1.5]
    row[j] = value
    return row


def _refused(send: Callable[[], Any]) -> RequestError:
    with pytest.raises(RequestError) as caught:
        send()
    return caught.value


@pytest.mark.parametrize("shape", SHAPES)
def test_a_string_at_the_limit_is_taken_one_over_it_refused_naming_the_feature(
    shape: str,
) -> None:
    rows = SHAPES[shape]("z" * LIMIT, 0)
    assert isinstance(rows, TypedRows) and rows.cells[0][0] == "z" * LIMIT
    error = _refused(lambda: SHAPES[shape]("z" * (LIMIT + 1), 0))
    assert error.reason is ErrorReason.INVALID_VALUE
    assert error.field == FIELDS[shape][0]
    assert error.message == (
        f"feature 'plan' takes strings of at most {LIMIT} characters "
        f"(MODELSERVE_MAX_STRING_LENGTH), got the string {'z' * 17!r}"
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_a_megabyte_string_is_quoted_by_its_first_characters_and_size(shape: str) -> None:
    for j, feature in ((0, "plan"), (1, "seats")):
        error = _refused(lambda j=j: SHAPES[shape](BIG, j))  # type: ignore[misc]
        assert error.field == FIELDS[shape][j]
        assert f"feature {feature!r}" in error.message
        assert error.message.endswith(f"got the string {'y' * 64!r}... (1048576 bytes)")


def test_without_a_limit_any_string_is_taken() -> None:
    rows = InputContract(FEATURES, "frame").records([[BIG, 3, 1.5]])
    assert isinstance(rows, TypedRows) and rows.cells[0][0] is BIG


def test_an_unknown_megabyte_key_is_named_cut() -> None:
    record = {"plan": "a", "seats": 3, "fee": 1.5, BIG: 1}
    for contract in (TYPED, NUMERIC):
        row = record if contract is TYPED else {"a": 1.0, "b": 2.0, BIG: 1}
        error = _refused(lambda c=contract, r=row: c.records([r]))  # type: ignore[misc]
        assert error.reason is ErrorReason.INVALID_FEATURES
        assert error.field == "instances[0]." + "y" * 64 + "... (1048576 bytes)"
        assert error.message == "unknown feature(s): " + "y" * 64 + "... (1048576 bytes)"


def test_a_megabyte_tensor_name_is_quoted_cut() -> None:
    columns = [Column("inputs[0]", BIG, [1.0])]
    error = _refused(lambda: TYPED.columns(columns))
    assert error.field == "inputs[0].name"
    assert error.message.startswith(f"{'y' * 64!r}... (1048576 bytes) is not a feature")


def test_a_numeric_model_refuses_a_megabyte_string_quoted_cut() -> None:
    for row in ([BIG, 1.0], {"a": BIG, "b": 1.0}):
        error = _refused(lambda r=row: NUMERIC.records([r]))  # type: ignore[misc]
        assert error.reason is ErrorReason.INVALID_VALUE
        assert error.message.endswith(f"got the string {'y' * 64!r}... (1048576 bytes)")
        assert len(error.message) < 200
