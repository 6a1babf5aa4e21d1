"""Open Inference Protocol v2 tensors: request ``inputs`` to model input, results to tensors.

A request carries either one tensor of shape ``[N, features]`` (row-major ``data``, flat or
nested) or one tensor per feature column, named after the feature, of shape ``[N]`` or
``[N, 1]``. The model's ``InputContract`` turns either into the same input /predict produces:
values are read from JSON as Python numbers, so an ``FP32`` tensor is not rounded to 32 bits.
Values sent as binary tensor data (``v2_binary``) become the same ``data`` first (an ``FP32``
tensor's bytes are the 32-bit values sent); outputs asked for as binary are answered so.
Errors answer ``{"error": "<field>: <message>"}`` with the protocol's statuses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import orjson
from starlette.responses import Response

from app.api.codecs import v2_binary
from app.api.errors import HEADERS, STATUS
from app.errors import ErrorReason, RequestError, describe_value, short_repr
from app.results import InferenceResult
from app.serving.contract import Column, InputContract, Rows
from app.serving.typed import INT_LIMIT

FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
INT_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
DATATYPES = FLOAT_TYPES | INT_TYPES | {"BYTES", "BOOL"}
PREDICT = "predict"
PREDICT_PROBA = "predict_proba"
PREDICTION_ID = "prediction_id"
OUTPUT_NAMES = (PREDICT, PREDICT_PROBA, PREDICTION_ID)
# The protocol calls a malformed request a 400; modelserve's own routes say 422.
V2_STATUS = {**STATUS, ErrorReason.INVALID_REQUEST: 400}
_SELF_EXPLAINED = frozenset({"body", "model"})  # messages that already say what they are about


def json_response(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
    )


def error_message(exc: RequestError) -> str:
    """The protocol's error string, naming the field (REST's ``error``, gRPC's details)."""
    prefixed = exc.field is not None and exc.field not in _SELF_EXPLAINED
    return f"{exc.field}: {exc.message}" if prefixed else exc.message


def render(exc: RequestError) -> Response:
    """A RequestError in the protocol's shape: one string naming the field."""
    response = json_response({"error": error_message(exc)}, V2_STATUS[exc.reason])
    response.headers.update(HEADERS.get(exc.reason, {}))
    return response


class Output(NamedTuple):
    """A requested output, and whether it is answered as binary tensor data."""

    name: str
    binary: bool = False


@dataclass(frozen=True)
class InferRequest:
    rows: Rows
    outputs: list[Output]
    id: str | None


def _bad(
    field: str, message: str, reason: ErrorReason = ErrorReason.INVALID_REQUEST
) -> RequestError:
    return RequestError(reason, message, field=field)


def decode_infer_request(
    payload: Any, contract: InputContract, max_batch: int, has_proba: bool
) -> InferRequest:
    """Validate an inference request body; every error names the offending field."""
    if not isinstance(payload, dict):
        raise _bad("body", "body must be a JSON object with 'inputs'")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _bad("id", "must be a string")
    if request_id is not None and len(request_id) > contract.max_string_length:
        # The answer echoes it: a megabyte in, a megabyte out.
        raise _bad(
            "id",
            f"must be at most {contract.max_string_length} characters "
            f"(MODELSERVE_MAX_STRING_LENGTH), got {describe_value(request_id)}",
        )
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _bad("inputs", "must be a non-empty list of tensors")
    tensors = [_tensor(t, f"inputs[{i}]", contract.numeric) for i, t in enumerate(inputs)]
    if len(tensors) == 1 and len(tensors[0].shape) == 2:
        rows = contract.matrix(tensors[0].values, tensors[0].shape, tensors[0].field)
    else:
        rows = contract.columns([_column(t) for t in tensors], "inputs")
    if len(rows) > max_batch:
        raise RequestError(
            ErrorReason.BATCH_TOO_LARGE,
            f"{len(rows)} rows is over the limit of {max_batch} per request",
            field="inputs",
        )
    binary = v2_binary.flag(payload.get("parameters"), "binary_data_output", "parameters", False)
    outputs = _outputs(payload.get("outputs"), has_proba, binary)
    return InferRequest(rows, outputs, request_id)


@dataclass(frozen=True)
class _Tensor:
    field: str
    name: str
    datatype: str
    shape: list[int]
    values: list[Any]


def _tensor(raw: Any, field: str, numeric: bool) -> _Tensor:
    """One checked tensor; a numbers-only model takes no BYTES, BOOL or null values."""
    if not isinstance(raw, dict):
        raise _bad(field, "must be a tensor object with name, shape, datatype and data")
    for key in ("name", "shape", "datatype", "data"):
        if key not in raw:
            raise _bad(f"{field}.{key}", "field required")
    name, shape, datatype = raw["name"], raw["shape"], raw["datatype"]
    if not isinstance(name, str):
        raise _bad(f"{field}.name", "must be a string")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise _bad(f"{field}.shape", f"must be [N, features] or [N], got {short_repr(shape)}")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise _bad(
            f"{field}.datatype",
            f"unsupported datatype {short_repr(datatype)}; use FP64, INT64 (or another numeric "
            "type), BYTES (UTF-8 strings) or BOOL",
        )
    if numeric and datatype in ("BYTES", "BOOL"):
        raise _bad(f"{field}.datatype", f"this model takes numbers only, not {datatype}")
    values = _flatten(raw["data"], f"{field}.data")
    expected = math.prod(shape)
    if len(values) != expected:
        raise _bad(f"{field}.data", f"has {len(values)} values but shape {shape} needs {expected}")
    if expected == 0:
        raise _bad(f"{field}.shape", "must hold at least one row")
    _check_values(values, datatype, f"{field}.data", allow_null=not numeric)
    return _Tensor(field, name, datatype, shape, values)


def _column(tensor: _Tensor) -> Column:
    if len(tensor.shape) == 2 and tensor.shape[1] != 1:
        raise _bad(
            f"{tensor.field}.shape", f"a feature column is [N] or [N, 1], got {tensor.shape}"
        )
    return Column(tensor.field, tensor.name, tensor.values)


def _flatten(data: Any, field: str) -> list[Any]:
    """Row-major values of flat or nested ``data`` (nesting is layout only, as in OIP)."""
    if not isinstance(data, list):
        raise _bad(field, "must be a list of numbers (flat or nested row-major)")
    if not any(isinstance(v, list) for v in data):
        return data
    flat: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if len(stack) > 8:
                    raise _bad(field, "is nested too deeply")
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


_ALLOWED: dict[str, tuple[type, ...]] = {"BYTES": (str,), "BOOL": (bool,)}
_WANT = {"BYTES": "a string", "BOOL": "true or false"}


def _check_values(values: list[Any], datatype: str, field: str, allow_null: bool) -> None:
    integers = datatype in INT_TYPES
    allowed = _ALLOWED.get(datatype, (int,) if integers else (int, float))
    want = _WANT.get(datatype, "an integer" if integers else "a number")
    for k, value in enumerate(values):
        kind = type(value)
        # A typed model's missing value is null or NaN on every route (tritonclient's JSON has
        # no null): the contract takes it as the feature's missing value, or names the feature
        # that may not be missing, as it does for /predict and /invocations.
        if allow_null and (value is None or (kind is float and math.isnan(value))):
            continue
        if kind not in allowed or (kind is int and abs(value) >= INT_LIMIT):
            raise _bad(
                f"{field}[{k}]",
                f"must be {want}, got {describe_value(value)}",
                ErrorReason.INVALID_VALUE,
            )
        if kind is float and not math.isfinite(value):
            raise _bad(
                f"{field}[{k}]", f"must be a finite number, got {value}", ErrorReason.INVALID_VALUE
            )


def _outputs(raw: Any, has_proba: bool, binary: bool) -> list[Output]:
    if raw is None:
        return [Output(PREDICT, binary)]
    if not isinstance(raw, list) or not raw:
        raise _bad("outputs", 'must be a non-empty list of {"name": ...} objects')
    names: list[Output] = []
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if name not in OUTPUT_NAMES:
            raise _bad(
                f"outputs[{i}].name",
                f"unknown output {short_repr(name)}; "
                f"available: {', '.join(available_outputs(has_proba))}",
            )
        if name == PREDICT_PROBA and not has_proba:
            raise _bad(f"outputs[{i}].name", "this model has no predict_proba")
        parameters, field = item.get("parameters"), f"outputs[{i}].parameters"
        names.append(Output(name, v2_binary.flag(parameters, "binary_data", field, binary)))
    return names


def available_outputs(has_proba: bool) -> list[str]:
    return [n for n in OUTPUT_NAMES if has_proba or n != PREDICT_PROBA]


FEATURE_DATATYPES = {"number": "FP64", "integer": "INT64", "boolean": "BOOL", "string": "BYTES"}


def datatype_of(array: npt.NDArray[Any]) -> str:
    """The OIP datatype of a numpy array (labels that are strings travel as BYTES)."""
    kind = array.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return "INT64"
    if kind == "f":
        return "FP64"
    return "BYTES"


def output_tensor(
    name: str, array: npt.NDArray[Any], binary: list[bytes] | None = None
) -> dict[str, Any]:
    """A response tensor: its shape and row-major flat ``data``, or, given ``binary``, its
    ``binary_data_size`` (its bytes appended to ``binary``)."""
    datatype = datatype_of(array)
    flat = array.reshape(-1)
    tensor: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
    if binary is not None:
        binary.append(v2_binary.tensor_bytes(flat, datatype))
        tensor["parameters"] = {"binary_data_size": len(binary[-1])}
    else:
        tensor["data"] = [str(v) for v in flat.tolist()] if datatype == "BYTES" else flat.tolist()
    return tensor


def result_arrays(result: InferenceResult) -> dict[str, npt.NDArray[Any] | None]:
    """Each output's array by name (``predict_proba`` None for a model without it)."""
    return {
        PREDICT: np.asarray(result.predictions),
        PREDICT_PROBA: None if result.probabilities is None else np.asarray(result.probabilities),
        PREDICTION_ID: np.asarray(result.prediction_ids),
    }


def encode(request: InferRequest, result: InferenceResult, request_id: str) -> Response:
    """JSON, or, when an output is asked for as binary, the JSON header and the tensor bytes."""
    arrays = result_arrays(result)
    outputs: list[dict[str, Any]] = []
    binary: list[bytes] = []
    for name, as_binary in request.outputs:
        array = arrays[name]
        if array is not None:
            outputs.append(output_tensor(name, array, binary if as_binary else None))
    payload = {
        "model_name": result.model,
        "model_version": result.version,
        "id": request.id if request.id is not None else request_id,
        "outputs": outputs,
    }
    if not binary:
        return json_response(payload)
    header = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return v2_binary.binary_response(header, binary)
