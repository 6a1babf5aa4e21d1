"""Open Inference Protocol v2: the docs' own requests, metadata, pinned versions, OIP errors."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.registry.store import Registry
from tests.helpers.support import Server
from tests.helpers.v2_models import KSERVE_REQUEST, MLSERVER_REQUEST, register_iris

ClientFactory = Callable[..., TestClient]


def _rows(request: dict[str, Any]) -> list[list[float]]:
    tensor = request["inputs"][0]
    n, width = tensor["shape"]
    return np.asarray(tensor["data"], dtype=np.float64).reshape(n, width).tolist()


def _output(body: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(o for o in body["outputs"] if o["name"] == name)
    return found


def _v1(client: TestClient | httpx.Client, name: str, rows: list[list[float]]) -> Any:
    response = client.post(f"/v1/models/{name}:predict", json={"instances": rows})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def iris_client(registry_path: Path, make_client: ClientFactory) -> TestClient:
    register_iris(registry_path, "iris", [0, 1, 2, 3])
    register_iris(registry_path, "iris-petals", [2, 3])
    return make_client()


def test_kserve_docs_request_gives_the_numbers_of_predict(iris_client: TestClient) -> None:
    response = iris_client.post("/v2/models/iris/infer", json=KSERVE_REQUEST)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = _v1(iris_client, "iris", _rows(KSERVE_REQUEST))
    assert body["model_name"] == "iris"
    assert body["model_version"] == expected["version"] == "1"
    assert [o["name"] for o in body["outputs"]] == ["predict"]  # the default output
    predict = _output(body, "predict")
    assert predict == {
        "name": "predict",
        "shape": [2],
        "datatype": "INT64",
        "data": predict["data"],
    }
    assert predict["data"] == expected["predictions"]


def test_mlserver_docs_request_gives_the_numbers_of_predict(iris_client: TestClient) -> None:
    response = iris_client.post("/v2/models/iris-petals/infer", json=MLSERVER_REQUEST)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = _v1(iris_client, "iris-petals", [[1, 2], [3, 4]])
    assert [o["name"] for o in body["outputs"]] == ["predict_proba"]
    proba = _output(body, "predict_proba")
    assert proba["shape"] == [2, 3]
    assert proba["datatype"] == "FP64"
    assert proba["data"] == np.asarray(expected["probabilities"]).reshape(-1).tolist()


def test_one_tensor_per_feature_column_equals_the_matrix(iris_client: TestClient) -> None:
    rows = _rows(KSERVE_REQUEST)
    names = iris_client.get("/models/iris").json()["metadata"][0]["features"]
    columns = {
        "id": "cols-1",
        "inputs": [
            {"name": f["name"], "shape": [2], "datatype": "FP64", "data": [r[j] for r in rows]}
            for j, f in reversed(list(enumerate(names)))  # order by name, not position
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}, {"name": "prediction_id"}],
    }
    body = iris_client.post("/v2/models/iris/infer", json=columns).json()
    expected = _v1(iris_client, "iris", rows)
    assert body["id"] == "cols-1"
    assert _output(body, "predict")["data"] == expected["predictions"]
    assert _output(body, "predict_proba")["data"] == np.ravel(expected["probabilities"]).tolist()
    ids = _output(body, "prediction_id")["data"]
    assert len(set(ids)) == 2 and ids[0] not in expected["prediction_ids"]


def test_request_id_is_echoed_when_the_body_has_none(iris_client: TestClient) -> None:
    response = iris_client.post(
        "/v2/models/iris/infer", json=KSERVE_REQUEST, headers={"X-Request-ID": "trace-42"}
    )
    assert response.json()["id"] == "trace-42"


def test_server_and_model_metadata(client: TestClient) -> None:
    assert client.get("/v2").json()["name"] == "modelserve"
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    ready = client.get("/v2/models/breast-cancer/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    meta = client.get("/v2/models/breast-cancer").json()
    assert meta["name"] == "breast-cancer"
    assert meta["platform"] == "sklearn"
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 30]}]
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs["predict"]["datatype"] == "INT64"
    assert outputs["predict_proba"]["shape"] == [-1, 2]
    assert client.get("/v2/models/breast-cancer/versions/1").json() == meta


def test_pinned_versions_load_on_demand_in_a_bounded_cache(
    registry_path: Path, make_client: ClientFactory
) -> None:
    for c in (1.0, 0.01, 100.0):  # three different models; production ends on version 3
        register_iris(registry_path, "iris", [0, 1, 2, 3], c=c)
    client = make_client(version_cache_size=1)
    request = {**KSERVE_REQUEST, "outputs": [{"name": "predict_proba"}]}
    registry = Registry(registry_path)
    seen = {}
    for version in ("1", "2", "3", "1"):
        response = client.post(f"/v2/models/iris/versions/{version}/infer", json=request)
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == version
        estimator = registry.load("iris", version).estimator
        expected = estimator.predict_proba(np.asarray(_rows(KSERVE_REQUEST)))
        assert _output(response.json(), "predict_proba")["data"] == expected.ravel().tolist()
        seen[version] = _output(response.json(), "predict_proba")["data"]
        assert len(client.app.state.services.models._pinned.loaded()) <= 1  # type: ignore[attr-defined]
    assert len({str(v) for v in seen.values()}) == 3
    assert client.post("/v2/models/iris/infer", json=request).json()["model_version"] == "3"
    ready = client.get("/v2/models/iris/versions/2/ready")
    assert ready.json() == {"name": "iris", "version": "2", "ready": True}
    for missing in ("4", "0", "latest"):
        response = client.post(f"/v2/models/iris/versions/{missing}/infer", json=request)
        assert response.status_code == 404
        assert set(response.json()) == {"error"}


def _bad(**changes: Any) -> dict[str, Any]:
    request = copy.deepcopy(KSERVE_REQUEST)
    request["inputs"][0].update(changes)
    return request


@pytest.mark.parametrize(
    ("path", "body", "status", "mentions"),
    [
        ("/v2/models/iris/infer", b"{not json", 400, "not valid JSON"),
        ("/v2/models/iris/infer", b"", 400, "empty"),
        ("/v2/models/iris/infer", {"instances": [[1, 2, 3, 4]]}, 400, "inputs"),
        ("/v2/models/iris/infer", {"inputs": [{"name": "x"}]}, 400, "inputs[0].shape"),
        ("/v2/models/iris/infer", _bad(shape=[2, 3], data=[1, 2, 3, 4, 5, 6]), 422, "[N, 4]"),
        ("/v2/models/iris/infer", _bad(shape=[3, 4]), 400, "needs 12"),
        ("/v2/models/iris/infer", _bad(datatype="BYTES"), 400, "inputs[0].datatype"),
        ("/v2/models/iris/infer", _bad(data=[[6.8, "a", 4.8, 1.4], [6, 3, 4, 1]]), 422, "data[1]"),
        ("/v2/models/iris/infer", _bad(data=[[6.8, None, 4.8, 1.4], [6, 3, 4, 1]]), 422, "null"),
        ("/v2/models/iris/infer", _bad(datatype="INT64"), 422, "integer"),
        ("/v2/models/iris/infer", _bad(shape=[0, 4], data=[]), 400, "at least one row"),
        ("/v2/models/iris/infer", _bad(name="petal", shape=[8]), 422, "not a feature"),
        (
            "/v2/models/iris/infer",
            {**KSERVE_REQUEST, "outputs": [{"name": "transform"}]},
            400,
            "outputs[0].name",
        ),
        ("/v2/models/nope/infer", KSERVE_REQUEST, 404, "nope"),
        ("/v2/models/iris/versions/7/infer", KSERVE_REQUEST, 404, "no version"),
        ("/v2/models/iris/generate", KSERVE_REQUEST, 404, "/v2/models/iris/generate"),
        ("/v2/models/nope", None, 404, "nope"),
    ],
)
def test_protocol_errors_come_back_in_oip_shape(
    iris_client: TestClient, path: str, body: Any, status: int, mentions: str
) -> None:
    if body is None:
        response = iris_client.get(path)
    elif isinstance(body, bytes):
        response = iris_client.post(path, content=body)
    else:
        response = iris_client.post(path, json=body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert set(payload) == {"error"} and isinstance(payload["error"], str)
    assert mentions in payload["error"]


def test_nan_and_oversized_batches_are_refused(iris_client: TestClient) -> None:
    nan = (
        b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, NaN, 2, 3]}]}'
    )
    response = iris_client.post("/v2/models/iris/infer", content=nan)
    assert response.status_code == 422 and "inputs[0].data[1]" in response.json()["error"]
    big = _bad(shape=[1001, 4], data=[1.0] * 4004)
    response = iris_client.post("/v2/models/iris/infer", json=big)
    assert response.status_code == 413 and set(response.json()) == {"error"}


@pytest.mark.e2e
def test_docs_requests_over_a_real_socket(
    registry_path: Path, server_factory: Callable[..., Server]
) -> None:
    register_iris(registry_path, "iris", [0, 1, 2, 3])
    register_iris(registry_path, "iris-petals", [2, 3])
    server = server_factory(registry_path)
    server.wait_ready()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        kserve = http.post("/v2/models/iris/infer", json=KSERVE_REQUEST).json()
        assert (
            _output(kserve, "predict")["data"]
            == _v1(http, "iris", _rows(KSERVE_REQUEST))["predictions"]
        )
        mlserver = http.post("/v2/models/iris-petals/infer", json=MLSERVER_REQUEST).json()
        expected = _v1(http, "iris-petals", [[1, 2], [3, 4]])["probabilities"]
        assert _output(mlserver, "predict_proba")["data"] == np.ravel(expected).tolist()
        bad = http.post("/v2/models/iris/infer", content=b"[")
        assert bad.status_code == 400 and set(bad.json()) == {"error"}
        exposition = http.get("/metrics").text
    # The v2 requests went through the same batcher and metrics as /v1 (2 rows each way).
    counted = _sample_sum(exposition, "modelserve_predictions_total", 'model="iris"')
    assert counted == 4
    assert 'handler="/v2/models/{name}/infer"' in exposition
    assert (
        _sample_sum(exposition, "modelserve_prediction_errors_total", 'reason="invalid_json"') == 1
    )


def _sample_sum(exposition: str, metric: str, label: str) -> float:
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(metric + "{") and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
