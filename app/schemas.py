"""Request parsing and response shapes for the prediction routes.

The body is parsed with orjson and validated by hand into a float64 matrix: that is several
times cheaper per request than a pydantic model, and lets every error name the exact field
(``instances[3].mean radius``). Pydantic models below describe the same shapes for OpenAPI.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import BaseModel, Field

from app.errors import ApiError
from app.metrics import ErrorReason

Number = int | float


class PredictRequest(BaseModel):
    instances: list[list[float] | dict[str, float]] = Field(
        ...,
        min_length=1,
        description="Rows to score: each a list of numbers in feature order, "
        "or an object mapping every feature name to a number.",
    )


class PredictResponse(BaseModel):
    model: str
    version: str
    predictions: list[Any]
    probabilities: list[list[float]] | None = Field(
        None, description="Per-class probabilities in the order of the model's classes."
    )
    prediction_ids: list[str] = Field(..., description="One unique id per instance.")


class ErrorBody(BaseModel):
    status: int
    type: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


def _invalid(reason: ErrorReason, field: str, message: str, status: int = 422) -> ApiError:
    return ApiError(status, reason, message, field=field)


def _reject_constant(name: str) -> float:
    return float(name)  # NaN / Infinity: kept as floats so the checks below name the field


def decode_json(body: bytes) -> Any:
    """Parse a JSON body; standard-library fallback so ``NaN`` reports its field, not a 400."""
    if not body.strip():
        raise _invalid(ErrorReason.INVALID_JSON, "body", "request body is empty", status=400)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise _invalid(
            ErrorReason.INVALID_JSON, "body", f"body is not valid JSON: {exc}", status=400
        ) from None


def parse_instances(
    payload: Any, feature_names: Sequence[str], max_batch: int
) -> npt.NDArray[np.float64]:
    """``{"instances": [...]}`` as an (n, features) float64 matrix, or an ApiError."""
    if not isinstance(payload, dict):
        raise _invalid(
            ErrorReason.INVALID_REQUEST, "body", "body must be a JSON object with 'instances'"
        )
    if "instances" not in payload:
        raise _invalid(ErrorReason.INVALID_REQUEST, "instances", "field required")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise _invalid(ErrorReason.INVALID_REQUEST, "instances", "must be a list of instances")
    if not instances:
        raise _invalid(ErrorReason.INVALID_REQUEST, "instances", "must not be empty")
    if len(instances) > max_batch:
        raise _invalid(
            ErrorReason.BATCH_TOO_LARGE,
            "instances",
            f"{len(instances)} instances is over the limit of {max_batch} per request",
            status=413,
        )
    width = len(feature_names)
    rows = [_row(instance, i, feature_names, width) for i, instance in enumerate(instances)]
    matrix = np.asarray(rows, dtype=np.float64)
    if not np.isfinite(matrix).all():
        i, j = (int(k) for k in np.argwhere(~np.isfinite(matrix))[0])
        raise _invalid(
            ErrorReason.INVALID_VALUE,
            _field(i, instances[i], feature_names[j], j),
            f"must be a finite number, got {matrix[i, j]}",
        )
    return matrix


def _row(instance: Any, i: int, names: Sequence[str], width: int) -> list[Number]:
    if isinstance(instance, list):
        if len(instance) != width:
            raise _invalid(
                ErrorReason.INVALID_FEATURES,
                f"instances[{i}]",
                f"expected {width} features, got {len(instance)}",
            )
        for j, value in enumerate(instance):
            if not _is_number(value):
                raise _invalid(
                    ErrorReason.INVALID_VALUE,
                    f"instances[{i}][{j}]",
                    f"feature {names[j]!r} must be a number, got {describe_value(value)}",
                )
        return instance
    if isinstance(instance, dict):
        missing = [n for n in names if n not in instance]
        if missing:
            raise _invalid(
                ErrorReason.INVALID_FEATURES,
                f"instances[{i}].{missing[0]}",
                f"missing feature(s): {', '.join(missing[:5])}"
                + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""),
            )
        if len(instance) != width:
            unknown = [k for k in instance if k not in set(names)]
            raise _invalid(
                ErrorReason.INVALID_FEATURES,
                f"instances[{i}].{unknown[0]}",
                f"unknown feature(s): {', '.join(map(str, unknown[:5]))}",
            )
        row = [instance[n] for n in names]
        for name, value in zip(names, row, strict=True):
            if not _is_number(value):
                raise _invalid(
                    ErrorReason.INVALID_VALUE,
                    f"instances[{i}].{name}",
                    f"must be a number, got {describe_value(value)}",
                )
        return row
    raise _invalid(
        ErrorReason.INVALID_REQUEST,
        f"instances[{i}]",
        f"must be a list of numbers or an object of feature values, got {describe_value(instance)}",
    )


def _is_number(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        return True
    return kind is int and abs(value) < 2**63


def describe_value(value: Any) -> str:
    """A short, safe description of a JSON value that is not the number it should be."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer out of range"
    if isinstance(value, float):
        return "a fractional number"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _field(i: int, instance: Any, name: str, j: int) -> str:
    return f"instances[{i}].{name}" if isinstance(instance, dict) else f"instances[{i}][{j}]"
