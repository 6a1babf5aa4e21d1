"""OIP v2 binary tensor data (issue #24, point 1), as tritonclient and KServe's client send it.

Requests are built here by hand from the extension's text (a JSON header of
``Inference-Header-Content-Length`` bytes, then each binary input's little-endian bytes in
input order): one ``[N, 30]`` FP64 tensor for the default model, one tensor per feature (BYTES,
INT64, FP64 with NaN for the nullable feature, BOOL) for the mixed-type churn model, in batches
of 1 and 50. Each answer must be byte for byte the JSON path's answer to the same values and
equal to the model called in-process (floats compared exactly); binary outputs are decoded back
and compared the same way; every malformed body is a 4xx naming its input.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_breast_cancer

from app.config import Settings
from app.registry.store import Registry
from tests.helpers.app_factory import ready_client
from tests.helpers.mixed import MIXED, TARGET, churn_frame, register_churn
from tests.helpers.oip_tensors import NUMPY, bits, from_bytes, tensor_bytes
from tests.helpers.support import copy_registry

ClientFactory = Callable[..., TestClient]
HEADER = "Inference-Header-Content-Length"
DEFAULT = "breast-cancer"
CHURN_TYPES = {"plan": "BYTES", "country": "BYTES", "seats": "INT64", "monthly_fee": "FP64",
               "autopay": "BOOL", "tenure_months": "FP64"}  # fmt: skip
BOTH = [{"name": "predict"}, {"name": "predict_proba"}]


# ---- the extension, written from its text ----------------------------------------------------


def binary_body(request: dict[str, Any], raw: list[bytes]) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(request).encode()
    return header + b"".join(raw), {HEADER: str(len(header))}


def binary_input(name: str, datatype: str, values: Any) -> tuple[dict[str, Any], bytes]:
    raw = tensor_bytes(values, datatype)
    shape = list(np.shape(values))
    tensor = {"name": name, "shape": shape, "datatype": datatype}
    return {**tensor, "parameters": {"binary_data_size": len(raw)}}, raw


def json_input(name: str, datatype: str, values: Any) -> dict[str, Any]:
    flat = np.ravel(np.asarray(values, dtype=object)).tolist()
    return {"name": name, "shape": list(np.shape(values)), "datatype": datatype, "data": flat}


def send_binary(
    client: TestClient, model: str, inputs: list[tuple[str, str, Any]], **request: Any
) -> Any:
    tensors, raw = zip(*(binary_input(*i) for i in inputs), strict=True)
    body, headers = binary_body({**request, "inputs": list(tensors)}, list(raw))
    return client.post(f"/v2/models/{model}/infer", content=body, headers=headers)


def send_json(
    client: TestClient, model: str, inputs: list[tuple[str, str, Any]], **request: Any
) -> Any:
    payload = {**request, "inputs": [json_input(*i) for i in inputs]}
    # The standard library writes NaN as the token Python clients send; modelserve reads it.
    return client.post(f"/v2/models/{model}/infer", content=json.dumps(payload).encode())


def decode_answer(response: Any) -> dict[str, Any]:
    """A binary answer with each binary output's ``data`` read back from its bytes."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers[HEADER])
    body = json.loads(response.content[:length])
    rest = response.content[length:]
    for output in body["outputs"]:
        if "data" in output:
            continue  # asked for as JSON
        size = output.pop("parameters")["binary_data_size"]
        chunk, rest = rest[:size], rest[size:]
        output["data"] = from_bytes(chunk, output["datatype"])
    assert rest == b""
    return dict(body)


# ---- models and data -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cancer_rows() -> npt.NDArray[np.float64]:
    data = np.asarray(load_breast_cancer().data, dtype=np.float64)
    return data[np.random.default_rng(3).permutation(len(data))[:50]].copy()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Registry]]:
    """One app for the module: the committed registry plus the churn model (registered once)."""
    workdir = tmp_path_factory.mktemp("v2-binary")
    registry = copy_registry(workdir / "models")
    register_churn(registry, workdir)
    with ready_client(Settings(registry=registry, poll_interval_s=0)) as client:
        yield client, Registry(registry)


@pytest.fixture
def client(served: tuple[TestClient, Registry]) -> TestClient:
    return served[0]


@pytest.fixture
def registry(served: tuple[TestClient, Registry]) -> Registry:
    return served[1]


@pytest.fixture
def churn(served: tuple[TestClient, Registry]) -> tuple[TestClient, Any]:
    client, registry = served
    return client, registry.load(MIXED, "1").estimator


def churn_rows(n: int) -> pd.DataFrame:
    """Fresh rows of the churn data in the training dtypes, the first one's tenure missing
    (NaN, as tritonclient sends it: its JSON has no null), and a few more among 50."""
    frame = churn_frame(200, seed=11).drop(columns=TARGET)
    missing = frame["tenure_months"].isna().to_numpy()
    first = int(np.flatnonzero(missing)[0])
    order = [first, *(k for k in range(len(frame)) if k != first)]
    picked = frame.iloc[order[:n]].reset_index(drop=True)
    assert picked["tenure_months"].isna().sum() >= (1 if n < 50 else 3)
    return picked


def churn_inputs(frame: pd.DataFrame, types: dict[str, str] = CHURN_TYPES) -> list[Any]:
    return [(name, types[name], frame[name].to_numpy()) for name in frame.columns]


# ---- answers equal to the JSON path and to the model -----------------------------------------


@pytest.mark.parametrize("n", [1, 50])
def test_one_fp64_matrix_answers_as_json_does_and_as_the_model(
    client: TestClient, cancer_rows: npt.NDArray[np.float64], registry: Registry, n: int
) -> None:
    rows = cancer_rows[:n]
    inputs = [("input-0", "FP64", rows)]
    binary = send_binary(client, DEFAULT, inputs, id="same", outputs=BOTH)
    as_json = send_json(client, DEFAULT, inputs, id="same", outputs=BOTH)
    assert binary.status_code == as_json.status_code == 200, binary.text
    assert binary.headers["content-type"] == "application/json" and HEADER not in binary.headers
    assert binary.content == as_json.content  # byte for byte
    model = registry.load(DEFAULT, "1").estimator
    predict, proba = binary.json()["outputs"]
    assert predict["data"] == model.predict(rows).tolist()
    assert bits(proba["data"]) == bits(model.predict_proba(rows).ravel().tolist())
    assert proba["shape"] == [n, 2]


@pytest.mark.parametrize("n", [1, 50])
def test_binary_outputs_decode_to_the_json_answer(
    client: TestClient, cancer_rows: npt.NDArray[np.float64], n: int
) -> None:
    inputs = [("input-0", "FP64", cancer_rows[:n])]
    outputs = [*BOTH, {"name": "prediction_id"}]
    flag = {"binary_data_output": True}
    binary = send_binary(client, DEFAULT, inputs, id="x", outputs=outputs, parameters=flag)
    as_json = send_json(client, DEFAULT, inputs, id="x", outputs=outputs).json()
    decoded = decode_answer(binary)
    ids = decoded["outputs"][2]["data"]
    assert len(set(ids)) == n and ids != as_json["outputs"][2]["data"]  # unique per call
    decoded["outputs"][2]["data"] = as_json["outputs"][2]["data"]
    assert [o["datatype"] for o in decoded["outputs"]] == ["INT64", "FP64", "BYTES"]
    for got, want in zip(decoded["outputs"], as_json["outputs"], strict=True):
        assert got == want and bits(got["data"]) == bits(want["data"])
    assert decoded["model_name"] == DEFAULT and decoded["id"] == "x"


def _json_header(answer: Any) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(answer.content[: int(answer.headers[HEADER])])
    return header


def test_each_output_may_say_binary_or_json_over_the_request_flag(
    client: TestClient, cancer_rows: npt.NDArray[np.float64]
) -> None:
    inputs = [("input-0", "FP64", cancer_rows[:3])]
    expected = send_json(client, DEFAULT, inputs, outputs=BOTH).json()["outputs"]
    # Every output binary but predict_proba, which says otherwise.
    json_proba = [
        {"name": "predict"},
        {"name": "predict_proba", "parameters": {"binary_data": False}},
    ]
    flag = {"binary_data_output": True}
    answer = send_binary(client, DEFAULT, inputs, outputs=json_proba, parameters=flag)
    predict, proba = _json_header(answer)["outputs"]
    assert predict["parameters"] == {"binary_data_size": 3 * 8} and "data" not in predict
    assert proba["data"] == expected[1]["data"] and "parameters" not in proba
    assert decode_answer(answer)["outputs"] == expected
    # Only predict_proba binary, asked for in a JSON request.
    binary_proba = [
        {"name": "predict"},
        {"name": "predict_proba", "parameters": {"binary_data": True}},
    ]
    answer = send_json(client, DEFAULT, inputs, outputs=binary_proba)
    predict, proba = _json_header(answer)["outputs"]
    assert predict["data"] == expected[0]["data"]
    assert proba["parameters"] == {"binary_data_size": 3 * 2 * 8}
    assert decode_answer(answer)["outputs"] == expected


@pytest.mark.parametrize("n", [1, 50])
def test_one_tensor_per_feature_with_bytes_bool_and_nan(
    churn: tuple[TestClient, Any], n: int
) -> None:
    client, model = churn
    frame = churn_rows(n)
    inputs = churn_inputs(frame)
    binary = send_binary(client, MIXED, inputs, id="c", outputs=BOTH)
    as_json = send_json(client, MIXED, inputs, id="c", outputs=BOTH)
    assert binary.status_code == 200, binary.text
    assert binary.content == as_json.content
    predict, proba = binary.json()["outputs"]
    assert predict["datatype"] == "BYTES" and predict["data"] == model.predict(frame).tolist()
    assert bits(proba["data"]) == bits(model.predict_proba(frame).ravel().tolist())
    flag = {"binary_data_output": True}
    decoded = decode_answer(
        send_binary(client, MIXED, inputs, id="c", outputs=BOTH, parameters=flag)
    )
    assert decoded == binary.json()


def test_narrower_datatypes_carry_the_same_values(churn: tuple[TestClient, Any]) -> None:
    """INT8..UINT64 seats and FP32 fees (values exact in 32 bits) answer as INT64 and FP64 do."""
    client, model = churn
    frame = churn_rows(50)
    frame["monthly_fee"] = frame["monthly_fee"].astype(np.float32).astype(np.float64)
    expected = send_binary(client, MIXED, churn_inputs(frame), id="n").content
    for seats in ("INT8", "INT16", "INT32", "UINT8", "UINT16", "UINT32", "UINT64"):
        types = {**CHURN_TYPES, "seats": seats, "monthly_fee": "FP32"}
        answer = send_binary(client, MIXED, churn_inputs(frame, types), id="n")
        assert answer.content == expected, (seats, answer.text)
    assert json.loads(expected)["outputs"][0]["data"] == model.predict(frame).tolist()


def test_binary_and_json_inputs_mix_in_one_request(churn: tuple[TestClient, Any]) -> None:
    client, _ = churn
    frame = churn_rows(50)
    tensors, raw = [], []
    for k, (name, datatype, values) in enumerate(churn_inputs(frame)):
        if k % 2:
            tensors.append(json_input(name, datatype, values))
        else:
            tensor, data = binary_input(name, datatype, values)
            tensors.append(tensor)
            raw.append(data)
    body, headers = binary_body({"id": "m", "inputs": tensors}, raw)
    answer = client.post(f"/v2/models/{MIXED}/infer", content=body, headers=headers)
    assert answer.content == send_json(client, MIXED, churn_inputs(frame), id="m").content


def test_json_bodies_without_the_header_still_work(client: TestClient) -> None:
    assert "binary_tensor_data" in client.get("/v2").json()["extensions"]
    request = {"id": "j", "inputs": [json_input("input-0", "FP64", [[0.5] * 30])]}
    answer = client.post(f"/v2/models/{DEFAULT}/infer", json=request)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert HEADER not in answer.headers and answer.json()["outputs"][0]["data"] in ([0], [1])
    # A JSON request may still ask for its outputs as binary data.
    binary = client.post(
        f"/v2/models/{DEFAULT}/infer", json={**request, "parameters": {"binary_data_output": True}}
    )
    assert decode_answer(binary) == answer.json()


# ---- the same refusals as the JSON path, and malformed bodies --------------------------------


@pytest.mark.parametrize(
    ("model_rows", "expected_status"),
    [("nan-cancer", 422), ("nan-fee", 422), ("too-many", 413)],
)
def test_validation_answers_as_the_json_path(
    churn: tuple[TestClient, Any],
    cancer_rows: npt.NDArray[np.float64],
    model_rows: str,
    expected_status: int,
) -> None:
    client, _ = churn
    if model_rows == "nan-cancer":
        rows = cancer_rows[:2].copy()
        rows[1, 4] = math.nan
        model, inputs = DEFAULT, [("input-0", "FP64", rows)]
    elif model_rows == "nan-fee":
        frame = churn_rows(3)
        frame.loc[2, "monthly_fee"] = math.nan
        model, inputs = MIXED, churn_inputs(frame)
    else:
        model, inputs = DEFAULT, [("input-0", "FP64", np.ones((1001, 30)))]
    binary, as_json = send_binary(client, model, inputs), send_json(client, model, inputs)
    assert binary.status_code == as_json.status_code == expected_status, binary.text
    assert binary.content == as_json.content
    if model_rows == "nan-fee":
        assert "feature 'monthly_fee' must not be missing" in binary.json()["error"]


def test_a_body_over_the_size_limit_is_refused(make_client: ClientFactory) -> None:
    client = make_client(max_body_bytes=4096)
    answer = send_binary(client, DEFAULT, [("input-0", "FP64", np.ones((20, 30)))])
    assert answer.status_code == 413 and "4096" in answer.json()["error"]


def _fp64(rows: int = 1) -> tuple[dict[str, Any], bytes]:
    return binary_input("input-0", "FP64", np.ones((rows, 30)))


def _sized(tensor: dict[str, Any], size: Any) -> dict[str, Any]:
    return {**tensor, "parameters": {"binary_data_size": size}}


def _churn(**changes: tuple[dict[str, Any], bytes]) -> tuple[dict[str, Any], list[bytes]]:
    """A two-row churn request, binary throughout, with some inputs replaced."""
    tensors, raw = [], []
    for name, datatype, values in churn_inputs(churn_rows(2)):
        tensor, data = changes.get(name) or binary_input(name, datatype, values)
        tensors.append(tensor)
        raw.append(data)
    return {"inputs": tensors}, raw


Case = tuple[str, dict[str, Any], list[bytes], str | None, int, str]


def _malformed() -> dict[str, Case]:
    """name: (model, JSON header, tensor bytes, header value, status, text of the error).

    The header value is the JSON header's length when None, absent when "none", that length
    less N for "cut:N", else sent as given."""
    fp64, raw = _fp64()
    plan, data = binary_input("plan", "BYTES", np.array(["basic", "pro"], dtype=object))
    autopay, _ = binary_input("autopay", "BOOL", np.array([True, False]))
    return {
        "header-not-a-number": (DEFAULT, {"inputs": [fp64]}, [raw], "12a", 400, HEADER),
        "header-negative": (DEFAULT, {"inputs": [fp64]}, [raw], "-1", 400, HEADER),
        "header-past-the-body": (DEFAULT, {"inputs": [fp64]}, [raw], "99999", 400, HEADER),
        "header-cuts-the-json": (
            DEFAULT, {"inputs": [fp64]}, [raw], "cut:10", 400,
            f"{HEADER}: the JSON header (the body's first",
        ),
        "header-empty": (
            DEFAULT, {"inputs": [fp64]}, [raw], "0", 400,
            f"{HEADER}: the JSON header (the body's first 0 bytes) is empty",
        ),
        "size-past-the-bytes": (
            DEFAULT, {"inputs": [fp64]}, [raw[:-8]], None, 400,
            "inputs[0].parameters.binary_data_size: 240 bytes run past the end of the body: "
            "232 bytes",
        ),
        "size-not-whole-values": (
            DEFAULT, {"inputs": [_sized(fp64, 236)]}, [raw[:236]], None, 400,
            "inputs[0].parameters.binary_data_size: 236 bytes are not a whole number of FP64",
        ),
        "shape-not-the-count": (
            DEFAULT, {"inputs": [{**fp64, "shape": [2, 30]}]}, [raw], None, 400,
            "inputs[0].shape: [2, 30] needs 60 values, but the 240 bytes of "
            "parameters.binary_data_size hold 30 FP64 values",
        ),
        "bytes-left-over": (
            DEFAULT, {"inputs": [fp64]}, [raw, b"\0" * 8], None, 400,
            "inputs[0].parameters.binary_data_size: 8 bytes are left over",
        ),
        "size-not-a-count": (
            DEFAULT, {"inputs": [_sized(fp64, -8)]}, [raw], None, 400,
            "inputs[0].parameters.binary_data_size: must be a byte count",
        ),
        "size-and-data": (
            DEFAULT, {"inputs": [{**fp64, "data": [1.0] * 30}]}, [raw], None, 400,
            "inputs[0].data: an input with parameters.binary_data_size",
        ),
        "unknown-datatype": (
            DEFAULT, {"inputs": [{**fp64, "datatype": "FP128"}]}, [raw], None, 400,
            "inputs[0].datatype: unsupported datatype 'FP128'",
        ),
        "bytes-length-runs-past": (
            MIXED, *_churn(plan=(plan, b"\xff\0\0\0" + data[4:])), None, 400,
            "inputs[0].data[0]: its length, 255 bytes, runs past the end of the input's "
            "16 bytes (12 left)",
        ),
        "bytes-length-cut": (
            MIXED, *_churn(plan=(_sized(plan, 11), data[:11])), None, 400,
            "inputs[0].data[1]: 2 bytes left, too few for a 4-byte BYTES length",
        ),
        "bytes-not-utf8": (
            MIXED, *_churn(plan=(plan, data[:4] + b"\xe9" + data[5:])), None, 422,
            "inputs[0].data[0]: must be a UTF-8 string",
        ),
        "bool-not-0-or-1": (
            MIXED, *_churn(autopay=(autopay, b"\x01\x02")), None, 422,
            "inputs[4].data[1]: a BOOL is one byte, 0 or 1; got 2",
        ),
        "no-header-but-binary": (
            DEFAULT, {"inputs": [fp64]}, [], "none", 400,
            "inputs[0].parameters.binary_data_size: 240 bytes run past the end of the body: "
            f"0 bytes of tensor data are left after the inputs before it (no {HEADER} header",
        ),
        "binary-output-flag": (
            DEFAULT, {"inputs": [fp64], "parameters": {"binary_data_output": "yes"}}, [raw],
            None, 400, "parameters.binary_data_output: must be true or false",
        ),
        "output-flag": (
            DEFAULT,
            {"inputs": [fp64], "outputs": [{"name": "predict", "parameters": {"binary_data": 1}}]},
            [raw], None, 400, "outputs[0].parameters.binary_data: must be true or false",
        ),
    }  # fmt: skip


MALFORMED = _malformed()


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_binary_bodies_are_a_named_4xx(churn: tuple[TestClient, Any], case: str) -> None:
    client, _ = churn
    model, request, raw, header, status, text = MALFORMED[case]
    head = json.dumps(request).encode()
    headers = {HEADER: str(len(head))}
    if header == "none":
        headers = {}
    elif header is not None and header.startswith("cut:"):
        headers[HEADER] = str(len(head) - int(header.removeprefix("cut:")))
    elif header is not None:
        headers[HEADER] = header
    answer = client.post(f"/v2/models/{model}/infer", content=head + b"".join(raw), headers=headers)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"} and text in body["error"], body["error"]


# ---- any body: an answer or a 4xx ------------------------------------------------------------

DATATYPES = [*NUMPY, "BYTES", "FP128"]
_tensors = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from([*CHURN_TYPES, "input-0"]),
            "datatype": st.sampled_from(DATATYPES),
            "shape": st.lists(st.integers(0, 4), min_size=1, max_size=2),
            "parameters": st.fixed_dictionaries(
                {"binary_data_size": st.one_of(st.integers(-2, 40), st.sampled_from(["8", None]))}
            ),
        }
    ),
    min_size=1,
    max_size=7,
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    tensors=_tensors,
    tail=st.binary(max_size=120),
    model=st.sampled_from([DEFAULT, MIXED]),
    offset=st.integers(-3, 3),
    outputs=st.sampled_from([None, [{"name": "predict", "parameters": {"binary_data": True}}]]),
)
def test_any_binary_body_is_an_answer_or_a_named_4xx(
    served: tuple[TestClient, Registry],
    tensors: list[dict[str, Any]],
    tail: bytes,
    model: str,
    offset: int,
    outputs: list[dict[str, Any]] | None,
) -> None:
    head = json.dumps({"inputs": tensors, **({"outputs": outputs} if outputs else {})}).encode()
    headers = {HEADER: str(len(head) + offset)}
    answer = served[0].post(f"/v2/models/{model}/infer", content=head + tail, headers=headers)
    assert answer.status_code < 500, answer.text
    if answer.status_code != 200:
        assert set(answer.json()) == {"error"}
