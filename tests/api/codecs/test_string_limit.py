"""Every codec that carries strings refuses one longer than the contract's limit naming the
feature, and quotes any big client value it refuses cut to a bounded length (issue #26).

The codecs are called directly with an ``InputContract`` of a small limit: /predict and /v1
(``v1.decode_instances``), MLflow's JSON formats and CSV (``mlflow``), OIP v2 JSON and binary
tensors (``v2``, ``v2_binary``) and gRPC ``ModelInfer`` (``grpc.codec``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from app.api.codecs import mlflow, v1, v2, v2_binary
from app.api.grpc import codec as grpc_codec
from app.api.grpc import grpc_predict_v2_pb2 as pb2
from app.errors import ErrorReason, RequestError
from app.registry.metadata import FeatureSpec
from app.serving.contract import InputContract, TypedRows

LIMIT = 32
MB = 1024 * 1024
BIG = "q" * MB
CUT = f"{'q' * 64!r}... (1048576 bytes)"
NAMES = ["plan", "seats", "fee"]
CONTRACT = InputContract(
    [
        FeatureSpec(name="plan", dtype="object", kind="string", categories=["a", "b"]),
        FeatureSpec(name="seats", dtype="int64", kind="integer"),
        FeatureSpec(name="fee"),
    ],
    "frame",
    max_string_length=LIMIT,
)
TYPES = ["BYTES", "INT64", "FP64"]


def _row(plan: str) -> list[Any]:
    return [plan, 3, 1.5]


def _tensors(plan: str) -> list[dict[str, Any]]:
    return [
        {"name": n, "datatype": t, "shape": [1], "data": [v]}
        for n, t, v in zip(NAMES, TYPES, _row(plan), strict=True)
    ]


def _binary(plan: str) -> Any:
    raw = plan.encode()
    tensors = _tensors(plan)
    tensors[0] = {**tensors[0], "parameters": {"binary_data_size": len(raw) + 4}}
    del tensors[0]["data"]
    header = orjson.dumps({"inputs": tensors})
    body = header + struct.pack("<I", len(raw)) + raw
    return v2.decode_infer_request(
        v2_binary.decode_body(body, str(len(header))), CONTRACT, 10, True
    )


def _grpc(plan: str, raw: bool) -> Any:
    request = pb2.ModelInferRequest(model_name="m")
    for name, datatype, value in zip(NAMES, TYPES, _row(plan), strict=True):
        tensor = request.inputs.add(name=name, datatype=datatype, shape=[1])
        if raw:
            request.raw_input_contents.append(
                struct.pack("<I", len(plan.encode())) + plan.encode()
                if datatype == "BYTES"
                else struct.pack("<q" if datatype == "INT64" else "<d", value)
            )
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.append(value.encode())
        elif datatype == "INT64":
            tensor.contents.int64_contents.append(value)
        else:
            tensor.contents.fp64_contents.append(value)
    return v2.decode_infer_request(grpc_codec.request_payload(request), CONTRACT, 10, True)


def _csv(plan: str) -> Any:
    text = "plan,seats,fee\n" + ",".join(map(str, _row(plan))) + "\n"
    return mlflow.decode_csv(text.encode(), CONTRACT, 10)


# Each codec given a request whose plan is ``plan``; the field the error names.
CODECS: dict[str, tuple[Callable[[str], Any], str]] = {
    "/predict by name": (
        lambda p: v1.decode_instances(
            {"instances": [dict(zip(NAMES, _row(p), strict=True))]}, CONTRACT, 10
        ),
        "instances[0].plan",
    ),
    "/v1 by position": (
        lambda p: v1.decode_instances({"instances": [_row(p)]}, CONTRACT, 10),
        "instances[0][0]",
    ),
    "mlflow dataframe_split": (
        lambda p: mlflow.decode_invocation(
            {"dataframe_split": {"columns": NAMES, "data": [_row(p)]}}, CONTRACT, 10
        ),
        "dataframe_split.data[0].plan",
    ),
    "mlflow dataframe_records": (
        lambda p: mlflow.decode_invocation(
            {"dataframe_records": [dict(zip(NAMES, _row(p), strict=True))]}, CONTRACT, 10
        ),
        "dataframe_records[0].plan",
    ),
    "mlflow inputs as columns": (
        lambda p: mlflow.decode_invocation(
            {"inputs": {n: [v] for n, v in zip(NAMES, _row(p), strict=True)}}, CONTRACT, 10
        ),
        "inputs[0].plan",
    ),
    "mlflow CSV": (_csv, "csv[0].plan"),
    "v2 JSON BYTES": (
        lambda p: v2.decode_infer_request({"inputs": _tensors(p)}, CONTRACT, 10, True),
        "inputs[0].data[0]",
    ),
    "v2 binary BYTES": (_binary, "inputs[0].data[0]"),
    "gRPC typed BYTES": (lambda p: _grpc(p, raw=False), "inputs[0].data[0]"),
    "gRPC raw BYTES": (lambda p: _grpc(p, raw=True), "inputs[0].data[0]"),
}


def _refused(send: Callable[[], Any]) -> RequestError:
    with pytest.raises(RequestError) as caught:
        send()
    return caught.value


@pytest.mark.parametrize("codec", CODECS)
def test_a_string_over_the_limit_is_refused_naming_the_feature(codec: str) -> None:
    decode, field = CODECS[codec]
    rows = decode("z" * LIMIT)
    rows = getattr(rows, "rows", rows)  # an Invocation or an InferRequest holds its rows
    assert isinstance(rows, TypedRows) and rows.cells[0][0] == "z" * LIMIT
    for plan, shown in (("z" * (LIMIT + 1), repr("z" * (LIMIT + 1))), (BIG, CUT)):
        error = _refused(lambda plan=plan: decode(plan))  # type: ignore[misc]
        assert error.reason is ErrorReason.INVALID_VALUE, error.message
        assert error.field == field
        assert error.message == (
            f"feature 'plan' takes strings of at most {LIMIT} characters "
            f"(MODELSERVE_MAX_STRING_LENGTH), got the string {shown}"
        )


def test_a_megabyte_csv_cell_is_read_to_be_named_and_the_csv_limit_restored() -> None:
    import csv

    before = csv.field_size_limit()
    assert _refused(lambda: _csv(BIG)).field == "csv[0].plan"
    assert csv.field_size_limit() == before


@pytest.mark.parametrize(
    ("send", "field", "says"),
    [
        (
            lambda: v1.decode_instances(
                {"instances": [{**dict(zip(NAMES, _row("a"), strict=True)), BIG: 1}]}, CONTRACT, 9
            ),
            "instances[0]." + "q" * 64 + "... (1048576 bytes)",
            "unknown feature(s): " + "q" * 64 + "... (1048576 bytes)",
        ),
        (
            lambda: mlflow.decode_csv(f"plan,{BIG}\na,1\n".encode(), CONTRACT, 9),
            "csv[0].seats",
            "missing feature(s): seats, fee",
        ),
        (
            lambda: mlflow.decode_csv(f"{BIG},{BIG}\na,1\n".encode(), CONTRACT, 9),
            "csv",
            f"header names {CUT} twice",
        ),
        (
            lambda: v2.decode_infer_request(
                {"inputs": [*_tensors("a"), {**_tensors("a")[2], "name": BIG}]}, CONTRACT, 9, True
            ),
            "inputs[3].name",
            f"{CUT} is not a feature of this model",
        ),
        (
            lambda: v2.decode_infer_request(
                {"inputs": _tensors("a"), "id": BIG}, CONTRACT, 9, True
            ),
            "id",
            f"must be at most {LIMIT} characters (MODELSERVE_MAX_STRING_LENGTH), got the string",
        ),
        (
            lambda: v2.decode_infer_request(
                {"inputs": [{**_tensors("a")[0], "datatype": BIG}]}, CONTRACT, 9, True
            ),
            "inputs[0].datatype",
            f"unsupported datatype {CUT}",
        ),
        (
            lambda: v2.decode_infer_request(
                {"inputs": [{**_tensors("a")[0], "shape": [BIG]}]}, CONTRACT, 9, True
            ),
            "inputs[0].shape",
            "must be [N, features] or [N], got ['qqq",
        ),
        (
            lambda: v2.decode_infer_request(
                {"inputs": [{**_tensors("a")[0], "shape": list(range(10**5))}]}, CONTRACT, 9, True
            ),
            "inputs[0].shape",
            "must be [N, features] or [N], got [0, 1, 2, 3, 4, 5, ...]",
        ),
        (
            lambda: v2.decode_infer_request(
                {"inputs": _tensors("a"), "outputs": [{"name": BIG}]}, CONTRACT, 9, True
            ),
            "outputs[0].name",
            f"unknown output {CUT}",
        ),
        (
            lambda: v2_binary.decode_body(b"{}", BIG),
            v2_binary.HEADER,
            "must be the byte length of the JSON header",
        ),
    ],
)
def test_any_big_value_a_codec_refuses_is_quoted_cut(
    send: Callable[[], Any], field: str, says: str
) -> None:
    error = _refused(send)
    assert error.field == field
    assert says in error.message
    assert len(error.message) < 400 and len(error.field or "") < 100


def test_a_grpc_request_id_is_checked_as_rest_s() -> None:
    request = pb2.ModelInferRequest(model_name="m", id=BIG)
    request.inputs.add(name="x", datatype="FP64", shape=[1]).contents.fp64_contents.append(1.0)
    payload = grpc_codec.request_payload(request)
    error = _refused(lambda: v2.decode_infer_request(payload, CONTRACT, 9, True))
    assert error.field == "id"
    assert pb2.ModelInferRequest(model_name="m").id == ""  # unset: no id in the payload
    assert "id" not in grpc_codec.request_payload(pb2.ModelInferRequest(model_name="m"))
