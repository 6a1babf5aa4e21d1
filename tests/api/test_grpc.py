"""The OIP v2 gRPC service (issue #24, point 2), in-process, through the generated stub.

One app (the committed registry plus the mixed-type churn model) serves HTTP in-process and
gRPC on a free loopback port from its lifespan. Every RPC is called; ModelInfer answers the
default model (one ``[N, 30]`` FP64 tensor) and the churn model (BYTES, INT64, FP64 with NaN
for the nullable tenure, BOOL; string labels) in batches of 1 and 50, with typed ``contents``
and with ``raw_input_contents``. Each answer equals the model called in-process (floats to the
bit) and the REST /v2 answer to the same values; a bad input is INVALID_ARGUMENT with the REST
message naming it, an unknown model NOT_FOUND.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sklearn.datasets import load_breast_cancer

from app import __version__
from app.api.grpc import grpc_predict_v2_pb2 as pb2
from app.config import Settings
from app.registry.store import Registry
from tests.helpers.app_factory import build_app, ready_client
from tests.helpers.grpc_client import infer_request, outputs, stub
from tests.helpers.mixed import MIXED, TARGET, churn_frame, register_churn
from tests.helpers.oip_tensors import bits
from tests.helpers.support import copy_registry, free_port

DEFAULT = "breast-cancer"
ALL = ("predict", "predict_proba", "prediction_id")
CHURN_TYPES = {"plan": "BYTES", "country": "BYTES", "seats": "INT64", "monthly_fee": "FP64",
               "autopay": "BOOL", "tenure_months": "FP64"}  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Any, Registry]]:
    workdir = tmp_path_factory.mktemp("grpc")
    registry = copy_registry(workdir / "models")
    register_churn(registry, workdir)
    port = free_port()
    settings = Settings(registry=registry, poll_interval_s=0, grpc_port=port)
    with ready_client(settings) as client, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield client, stub(channel), Registry(registry)


@pytest.fixture(scope="module")
def cancer_rows() -> npt.NDArray[np.float64]:
    data = np.asarray(load_breast_cancer().data, dtype=np.float64)
    return data[np.random.default_rng(5).permutation(len(data))[:50]].copy()


def churn_rows(n: int) -> pd.DataFrame:
    """Fresh churn rows, the first with its tenure missing (NaN), more among 50."""
    frame = churn_frame(200, seed=12).drop(columns=TARGET)
    missing = frame["tenure_months"].isna().to_numpy()
    first = int(np.flatnonzero(missing)[0])
    order = [first, *(k for k in range(len(frame)) if k != first)]
    return frame.iloc[order[:n]].reset_index(drop=True)


def json_tensors(inputs: list[tuple[str, str, Any]]) -> list[dict[str, Any]]:
    return [
        {"name": n, "datatype": t, "shape": list(np.shape(v)),
         "data": np.ravel(np.asarray(v, dtype=object)).tolist()}
        for n, t, v in inputs
    ]  # fmt: skip


def rest_outputs(client: TestClient, model: str, inputs: list[tuple[str, str, Any]]) -> Any:
    tensors = json_tensors(inputs)
    body = {"id": "same", "inputs": tensors, "outputs": [{"name": o} for o in ALL]}
    answer = client.post(f"/v2/models/{model}/infer", content=json.dumps(body).encode())
    assert answer.status_code == 200, answer.text
    return answer.json()


def assert_same_as_rest(got: dict[str, Any], rest: dict[str, Any]) -> None:
    for output in rest["outputs"]:
        shape, datatype, values = got[output["name"]]
        assert (shape, datatype) == (output["shape"], output["datatype"])
        if output["name"] == "prediction_id":  # fresh per request, one per row
            assert len(set(values)) == len(values) == len(output["data"])
        else:
            assert bits(values) == bits(output["data"])


# ---- health and metadata --------------------------------------------------------------------


def test_health_and_server_metadata(served: tuple[TestClient, Any, Registry]) -> None:
    _, grpc_stub, _ = served
    assert grpc_stub.ServerLive(pb2.ServerLiveRequest()).live is True
    assert grpc_stub.ServerReady(pb2.ServerReadyRequest()).ready is True
    meta = grpc_stub.ServerMetadata(pb2.ServerMetadataRequest())
    assert (meta.name, meta.version) == ("modelserve", __version__)
    for model in (DEFAULT, MIXED):
        assert grpc_stub.ModelReady(pb2.ModelReadyRequest(name=model)).ready is True
    pinned = pb2.ModelReadyRequest(name=DEFAULT, version="1")
    assert grpc_stub.ModelReady(pinned).ready is True


@pytest.mark.parametrize("model", [DEFAULT, MIXED])
def test_model_metadata_is_the_rest_metadata(
    served: tuple[TestClient, Any, Registry], model: str
) -> None:
    client, grpc_stub, _ = served
    got = grpc_stub.ModelMetadata(pb2.ModelMetadataRequest(name=model))
    rest = client.get(f"/v2/models/{model}").json()
    tensors = [
        [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in group]
        for group in (got.inputs, got.outputs)
    ]
    assert (got.name, list(got.versions), got.platform) == (
        rest["name"], rest["versions"], rest["platform"]
    )  # fmt: skip
    assert tensors == [rest["inputs"], rest["outputs"]]


# ---- inference: the model's answer, the REST answer ------------------------------------------


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
@pytest.mark.parametrize("n", [1, 50])
def test_default_model_answers_as_the_model_and_rest(
    served: tuple[TestClient, Any, Registry],
    cancer_rows: npt.NDArray[np.float64],
    n: int,
    raw: bool,
) -> None:
    client, grpc_stub, registry = served
    rows = cancer_rows[:n]
    inputs = [("input-0", "FP64", rows)]
    response = grpc_stub.ModelInfer(infer_request(DEFAULT, inputs, raw, ALL))
    assert (response.model_name, response.model_version, response.id) == (DEFAULT, "1", "same")
    assert bool(response.raw_output_contents) is raw
    got = outputs(response)
    model = registry.load(DEFAULT, "1").estimator
    assert got["predict"] == ([n], "INT64", model.predict(rows).tolist())
    proba = got["predict_proba"]
    assert proba[:2] == ([n, 2], "FP64")
    assert bits(proba[2]) == bits(model.predict_proba(rows).ravel().tolist())
    assert_same_as_rest(got, rest_outputs(client, DEFAULT, inputs))


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
@pytest.mark.parametrize("n", [1, 50])
def test_churn_model_answers_as_the_model_and_rest(
    served: tuple[TestClient, Any, Registry], n: int, raw: bool
) -> None:
    client, grpc_stub, registry = served
    frame = churn_rows(n)
    inputs = [(c, CHURN_TYPES[c], frame[c].to_numpy()) for c in frame.columns]
    got = outputs(grpc_stub.ModelInfer(infer_request(MIXED, inputs, raw, ALL)))
    model = registry.load(MIXED, "1").estimator
    assert got["predict"] == ([n], "BYTES", model.predict(frame).tolist())
    assert bits(got["predict_proba"][2]) == bits(model.predict_proba(frame).ravel().tolist())
    assert_same_as_rest(got, rest_outputs(client, MIXED, inputs))


def test_without_requested_outputs_the_answer_is_predict_as_on_rest(
    served: tuple[TestClient, Any, Registry], cancer_rows: npt.NDArray[np.float64]
) -> None:
    _, grpc_stub, _ = served
    response = grpc_stub.ModelInfer(infer_request(DEFAULT, [("x", "FP64", cancer_rows[:2])], True))
    assert [o.name for o in response.outputs] == ["predict"]


# ---- errors -----------------------------------------------------------------------------------


def _error(call: Any, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request)
    error: grpc.RpcError = caught.value
    return error


def test_a_bad_value_is_invalid_argument_naming_the_input_as_rest_does(
    served: tuple[TestClient, Any, Registry],
) -> None:
    client, grpc_stub, _ = served
    frame = churn_rows(3)
    inputs = [(c, CHURN_TYPES[c], frame[c].to_numpy()) for c in frame.columns]
    inputs[2] = ("seats", "FP64", np.array([1.0, 2.5, 3.0]))  # a fraction for an integer
    for raw in (False, True):
        error = _error(grpc_stub.ModelInfer, infer_request(MIXED, inputs, raw))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = str(error.details())
        assert "seats" in details and "inputs[2]" in details, details
    body = json.dumps({"inputs": json_tensors(inputs)}).encode()  # NaN as Python clients send it
    rest = client.post(f"/v2/models/{MIXED}/infer", content=body)
    assert rest.status_code == 422 and rest.json()["error"] == details


def test_malformed_tensors_are_invalid_argument_naming_the_field(
    served: tuple[TestClient, Any, Registry], cancer_rows: npt.NDArray[np.float64]
) -> None:
    _, grpc_stub, _ = served
    short = infer_request(DEFAULT, [("x", "FP64", cancer_rows[:2])], True)
    short.raw_input_contents[0] = short.raw_input_contents[0][:-8]
    stray = infer_request(DEFAULT, [("x", "FP64", cancer_rows[:2])], False)
    stray.inputs[0].contents.int64_contents.append(1)
    extra = infer_request(DEFAULT, [("x", "FP64", cancer_rows[:2])], True)
    extra.raw_input_contents.append(b"")
    cases = {
        "inputs[0].shape": short,
        "inputs[0].contents.int64_contents": stray,
        "raw_input_contents": extra,
        "inputs: must be a non-empty": pb2.ModelInferRequest(model_name=DEFAULT),
    }
    for field, request in cases.items():
        error = _error(grpc_stub.ModelInfer, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert str(error.details()).startswith(field), error.details()


def test_unknown_model_is_not_found(served: tuple[TestClient, Any, Registry]) -> None:
    _, grpc_stub, _ = served
    for call, request in [
        (grpc_stub.ModelInfer, infer_request("nope", [("x", "FP64", [[1.0]])], False)),
        (grpc_stub.ModelMetadata, pb2.ModelMetadataRequest(name="nope")),
        (grpc_stub.ModelReady, pb2.ModelReadyRequest(name="nope")),
    ]:
        assert _error(call, request).code() == grpc.StatusCode.NOT_FOUND


def test_calls_are_counted_by_method_and_code(served: tuple[TestClient, Any, Registry]) -> None:
    _, grpc_stub, _ = served

    def count(method: str, code: str) -> float:
        labels = {"method": method, "code": code}
        return REGISTRY.get_sample_value("modelserve_grpc_requests_total", labels) or 0.0

    before = count("ServerLive", "OK"), count("ModelInfer", "NOT_FOUND")
    grpc_stub.ServerLive(pb2.ServerLiveRequest())
    _error(grpc_stub.ModelInfer, infer_request("nope", [("x", "FP64", [[1.0]])], False))
    assert (count("ServerLive", "OK"), count("ModelInfer", "NOT_FOUND")) == (
        before[0] + 1, before[1] + 1
    )  # fmt: skip


def test_a_second_server_on_the_same_grpc_port_fails_to_start_and_says_so(
    served: tuple[TestClient, Any, Registry],
) -> None:
    """One worker does not share its gRPC port: a second server there would silently take
    part of the first one's calls (the kernel spreads SO_REUSEPORT sockets' connections)."""
    client, _, registry = served
    port = int(client.app.state.services.settings.grpc_port)  # type: ignore[attr-defined]
    settings = Settings(registry=registry.root, poll_interval_s=0, grpc_port=port)
    says = f"cannot serve gRPC on .*:{port}.*MODELSERVE_GRPC_PORT"
    with pytest.raises(RuntimeError, match=says), TestClient(build_app(settings)):
        pass
