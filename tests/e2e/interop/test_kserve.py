"""The KServe SDK (kserve 0.21.0), unmodified and in its default settings: V1 REST, V2 REST and
V2 gRPC.

The client script (``clients/kserve_calls.py``) runs in kserve's own virtualenv with the SDK's
async clients. V1: ``InferenceRESTClient(RESTConfig(protocol="v1")).infer`` with
``{"instances": ...}``, the default model's rows as lists of 30 floats and the churn pipeline's
as objects keyed by column, a missing tenure a Python NaN (which the client's orjson encoder
sends as ``null``), ``is_server_live`` (``GET /``) and ``is_model_ready``
(``GET /v1/models/{name}``). V2 REST and gRPC: the
same ``InferRequest``, the default model as one ``[N, 30]`` FP64 tensor and the churn pipeline
as one tensor per feature (BYTES from object arrays of str, INT64, FP64 with NaN for a missing
tenure, BOOL), set with ``set_data_from_numpy`` (binary tensor data over REST,
``raw_input_contents`` over gRPC), with no requested outputs and with ``predict`` and
``predict_proba`` as ``RequestedOutput``s, decoded with ``as_numpy()``; plus the server and
model readiness calls. Batches of 1 and 50; every value must be what the model returns
in-process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers.interop import (
    BATCHES,
    DEFAULT,
    Served,
    cancer_rows,
    check,
    columns,
    run_client,
    v2_calls,
)  # fmt: skip
from tests.helpers.mixed import MIXED

pytestmark = pytest.mark.e2e
MODELS = (DEFAULT, MIXED)
DTYPES = {DEFAULT: ("INT64", "int64"), MIXED: ("BYTES", "object")}


def _instances(model: str, n: int) -> list[Any]:
    if model == DEFAULT:
        rows: list[Any] = cancer_rows()[:n].tolist()
        return rows
    table = columns(n)
    return [{name: values[i] for name, values in table.items()} for i in range(n)]


def _v1_calls() -> list[dict[str, Any]]:
    return [
        {"model": model, "n": n, "instances": _instances(model, n)}
        for n in BATCHES
        for model in MODELS
    ]


def _v2_calls() -> list[dict[str, Any]]:
    return v2_calls(("rest", "grpc"))


def exchange(http: str, grpc: str, workdir: Path) -> dict[str, Any]:
    """The calls made by the KServe SDK against ``http`` and ``grpc``; its report."""
    spec = {"http": http, "grpc": grpc, "models": list(MODELS), "v1": _v1_calls(),
            "v2": _v2_calls()}  # fmt: skip
    return run_client("kserve", "kserve_calls.py", spec, workdir)


def verify(served: Served, report: dict[str, Any]) -> None:
    every = [True] * len(MODELS)
    assert report["ready"] == {"v1_server": True, "v2_live": True, "grpc_live": True,
                               "v1_models": every, "v2_server": True, "v2_models": every,
                               "grpc_server": True, "grpc_models": every}  # fmt: skip
    for call, got in zip(_v1_calls(), report["v1"], strict=True):
        model, n = call["model"], call["n"]
        where = f"kserve v1, {model}, {n} rows"
        assert got["model"] == model and len(got["prediction_ids"]) == n, (where, got)
        proba = [p for row in got["probabilities"] for p in row]
        assert len(got["probabilities"]) == n and len(proba) == 2 * n, where
        check(served, model, n, got["predictions"], proba, where)
    for call, outputs in zip(_v2_calls(), report["v2"], strict=True):
        model, n, protocol = call["model"], call["n"], call["protocol"]
        where = f"kserve v2 {protocol}, {model}, {n} rows, outputs {call['outputs']}"
        predict = outputs["predict"]
        assert predict["shape"] == [n], where
        assert (predict["datatype"], predict["dtype"]) == DTYPES[model], where
        proba = outputs.get("predict_proba")
        if call["outputs"] is None:
            assert list(outputs) == ["predict"], where  # modelserve's default output
        else:
            assert list(outputs) == call["outputs"], where
            assert proba["datatype"] == "FP64" and proba["dtype"] == "float64", where
            assert proba["shape"] == [n, 2], where
        check(served, model, n, predict["values"], proba and proba["values"], where)


def test_kserve_sdk_defaults_get_the_models_own_answers(served: Served, tmp_path: Path) -> None:
    verify(served, exchange(served.http, served.grpc, tmp_path))
