"""``ModelInferRequest`` in, ``ModelInferResponse`` out, through the REST codec's validation.

A request's tensors become the REST body ``app.api.codecs.v2.decode_infer_request`` reads:
each input's ``name``, ``datatype``, ``shape`` and ``data``, the values taken from the
``contents`` field of its datatype (``fp64_contents`` for FP64, ``int_contents`` for INT8 to
INT32, ...) or from its ``raw_input_contents`` entry, read as the binary tensor extension reads
bytes (``app.api.codecs.v2_binary.values``). So the contract, the missing-value rule (NaN for
a nullable feature), the batch limit and every error message are the REST path's. Outputs are
answered as ``raw_output_contents`` when the inputs came raw (as Triton does), else typed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from app.api.codecs import v2, v2_binary
from app.api.grpc import grpc_predict_v2_pb2 as pb2
from app.errors import ErrorReason, RequestError
from app.results import InferenceResult

_INT = "int_contents"
_UINT = "uint_contents"
CONTENTS = {
    "BOOL": "bool_contents", "INT8": _INT, "INT16": _INT, "INT32": _INT,
    "INT64": "int64_contents", "UINT8": _UINT, "UINT16": _UINT, "UINT32": _UINT,
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}  # fmt: skip
_FIELDS = sorted(set(CONTENTS.values()))


def _bad(
    field: str, message: str, reason: ErrorReason = ErrorReason.INVALID_REQUEST
) -> RequestError:
    return RequestError(reason, message, field=field)


def request_payload(request: pb2.ModelInferRequest) -> dict[str, Any]:
    """The REST inference body of the same tensors (``inputs`` with ``data``, ``outputs``)."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise _bad(
            "raw_input_contents",
            f"has {len(raw)} entries for {len(request.inputs)} inputs: one per input, in order",
        )
    inputs: list[dict[str, Any]] = []
    for i, tensor in enumerate(request.inputs):
        field = f"inputs[{i}]"
        item: dict[str, Any] = {
            "name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)
        }  # fmt: skip
        if raw:
            if tensor.HasField("contents"):
                raise _bad(f"{field}.contents", "must be unset when raw_input_contents is used")
            where = f"raw_input_contents[{i}]"
            item["data"] = v2_binary.values(item, memoryview(raw[i]), field, where)
        else:
            item["data"] = _typed(tensor, field)
        inputs.append(item)
    payload: dict[str, Any] = {"inputs": inputs}
    if request.id:  # checked as REST's (the answer echoes it)
        payload["id"] = request.id
    if request.outputs:
        payload["outputs"] = [{"name": output.name} for output in request.outputs]
    return payload


def _typed(tensor: pb2.ModelInferRequest.InferInputTensor, field: str) -> list[Any]:
    """The values in the ``contents`` field of the tensor's datatype, and in no other."""
    datatype, contents = tensor.datatype, tensor.contents
    own = CONTENTS.get(datatype)
    stray = next((f for f in _FIELDS if f != own and len(getattr(contents, f))), None)
    if own is None:
        if datatype in v2.DATATYPES:  # FP16: no typed field in the protocol
            raise _bad(f"{field}.datatype", f"{datatype} values travel only as raw_input_contents")
        return []  # an unknown datatype: the tensor check names it
    if stray is not None:
        raise _bad(f"{field}.contents.{stray}", f"a {datatype} tensor's values go in {own}")
    values: list[Any] = list(getattr(contents, own))
    if datatype != "BYTES":
        return values
    strings: list[Any] = []
    for k, value in enumerate(values):
        try:
            strings.append(value.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise _bad(
                f"{field}.contents.bytes_contents[{k}]",
                f"must be a UTF-8 string: {exc.reason}",
                ErrorReason.INVALID_VALUE,
            ) from None
    return strings


def response(
    request: v2.InferRequest, result: InferenceResult, request_id: str, raw: bool
) -> pb2.ModelInferResponse:
    """The requested outputs, as ``raw_output_contents`` or typed ``contents``."""
    answer = pb2.ModelInferResponse(
        model_name=result.model, model_version=result.version, id=request_id
    )
    arrays = v2.result_arrays(result)
    for name, _ in request.outputs:
        array = arrays[name]
        if array is None:
            continue
        datatype = v2.datatype_of(array)
        flat = array.reshape(-1)
        tensor = answer.outputs.add(name=name, datatype=datatype, shape=array.shape)
        if raw:
            answer.raw_output_contents.append(v2_binary.tensor_bytes(flat, datatype))
        else:
            _fill(tensor.contents, flat, datatype)
    return answer


def _fill(contents: pb2.InferTensorContents, flat: npt.NDArray[Any], datatype: str) -> None:
    """Typed values; strings as the REST path writes them, UTF-8."""
    if datatype == "BYTES":
        contents.bytes_contents.extend(str(v).encode() for v in flat.tolist())
    elif datatype == "BOOL":
        contents.bool_contents.extend(flat.astype(np.bool_).tolist())
    elif datatype == "INT64":
        contents.int64_contents.extend(flat.astype(np.int64).tolist())
    else:
        contents.fp64_contents.extend(flat.astype(np.float64).tolist())
