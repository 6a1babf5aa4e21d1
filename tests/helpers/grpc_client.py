"""A client of modelserve's OIP v2 gRPC service, from the generated stub, for the tests.

``tensor`` builds an input with typed ``contents`` (or, given ``raw``, appends its bytes to
``raw_input_contents``'s list: little-endian, BOOL one byte, BYTES length-prefixed, as the
protocol says); ``outputs`` reads an answer's tensors back to Python lists either way.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from app.api.grpc import grpc_predict_v2_pb2 as pb2
from tests.helpers import grpc_predict_v2_pb2_grpc as pb2_grpc
from tests.helpers.oip_tensors import from_bytes, tensor_bytes

TYPED = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT32": "int_contents",
         "INT64": "int64_contents", "BOOL": "bool_contents", "BYTES": "bytes_contents"}  # fmt: skip


def stub(channel: grpc.Channel) -> Any:
    """``GRPCInferenceServiceStub`` (generated code, untyped)."""
    return pb2_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]


def tensor(
    name: str, datatype: str, values: Any, raw: list[bytes] | None = None
) -> pb2.ModelInferRequest.InferInputTensor:
    shape = list(np.shape(values))
    item = pb2.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    if raw is not None:
        raw.append(tensor_bytes(values, datatype))
        return item
    flat = np.ravel(np.asarray(values, dtype=object)).tolist()
    if datatype == "BYTES":
        flat = [str(v).encode() for v in flat]
    getattr(item.contents, TYPED[datatype]).extend(flat)
    return item


def infer_request(
    model: str, inputs: list[tuple[str, str, Any]], raw: bool, outputs: tuple[str, ...] = ()
) -> pb2.ModelInferRequest:
    chunks: list[bytes] | None = [] if raw else None
    request = pb2.ModelInferRequest(
        model_name=model,
        id="same",
        inputs=[tensor(*i, raw=chunks) for i in inputs],
        outputs=[pb2.ModelInferRequest.InferRequestedOutputTensor(name=o) for o in outputs],
    )
    request.raw_input_contents.extend(chunks or [])
    return request


def outputs(response: pb2.ModelInferResponse) -> dict[str, tuple[list[int], str, list[Any]]]:
    """Each output's shape, datatype and values, from raw bytes or typed contents."""
    raw = list(response.raw_output_contents)
    assert not raw or len(raw) == len(response.outputs)
    read: dict[str, tuple[list[int], str, list[Any]]] = {}
    for i, out in enumerate(response.outputs):
        if raw:
            assert not out.HasField("contents")
            values = from_bytes(raw[i], out.datatype)
        else:
            values = list(getattr(out.contents, TYPED[out.datatype]))
            if out.datatype == "BYTES":
                values = [v.decode() for v in values]
        read[out.name] = (list(out.shape), out.datatype, values)
    return read
