"""Every bad input of the foundation issue gets its documented 4xx naming the field; never a 500."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.registry.store import Registry

MAX_BATCH = 5
DEFAULT_BODY_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True)
class Case:
    id: str
    body: Callable[[list[str], list[Any]], bytes | Iterator[bytes]]
    status: int
    type: str
    field: str
    path: str = "/predict"


def _instances(*rows: Any) -> bytes:
    # json.dumps writes NaN / Infinity / -Infinity, as careless Python clients do.
    return json.dumps({"instances": list(rows)}).encode()


def _with(row: list[Any], j: int, value: Any) -> list[Any]:
    return [*row[:j], value, *row[j + 1 :]]


def _named(names: list[str], row: list[Any]) -> dict[str, Any]:
    return dict(zip(names, row, strict=True))


def _chunked_oversize() -> Iterator[bytes]:
    # No Content-Length: the limit must hold while streaming, too.
    yield b'{"instances": ['
    for _ in range(5):
        yield b" " * (1024 * 1024)
    yield b"]}"


CASES = [
    Case("malformed JSON", lambda n, r: b'{"instances": [[1, 2', 400, "invalid_json", "body"),
    Case("empty body", lambda n, r: b"", 400, "invalid_json", "body"),
    Case("body not an object", lambda n, r: b"[1, 2]", 422, "invalid_request", "body"),
    Case("missing instances", lambda n, r: b'{"rows": []}', 422, "invalid_request", "instances"),
    Case(
        "instances not a list",
        lambda n, r: b'{"instances": {"a": 1}}',
        422,
        "invalid_request",
        "instances",
    ),
    Case("empty list", lambda n, r: b'{"instances": []}', 422, "invalid_request", "instances"),
    Case(
        "instance neither list nor object",
        lambda n, r: _instances(r, "row"),
        422,
        "invalid_request",
        "instances[1]",
    ),
    Case(
        "too few features",
        lambda n, r: _instances(r[:-1]),
        422,
        "invalid_features",
        "instances[0]",
    ),
    Case(
        "too many features",
        lambda n, r: _instances(r, [*r, 1.0]),
        422,
        "invalid_features",
        "instances[1]",
    ),
    Case(
        "unknown feature name",
        lambda n, r: _instances({**_named(n, r), "tumour colour": 1.0}),
        422,
        "invalid_features",
        "instances[0].tumour colour",
    ),
    Case(
        "missing feature name",
        lambda n, r: _instances({k: v for k, v in _named(n, r).items() if k != "mean area"}),
        422,
        "invalid_features",
        "instances[0].mean area",
    ),
    Case(
        "string value",
        lambda n, r: _instances(_with(r, 3, "12.5")),
        422,
        "invalid_value",
        "instances[0][3]",
    ),
    Case(
        "null value",
        lambda n, r: _instances(r, _with(r, 7, None)),
        422,
        "invalid_value",
        "instances[1][7]",
    ),
    Case(
        "bool value",
        lambda n, r: _instances(_with(r, 0, True)),
        422,
        "invalid_value",
        "instances[0][0]",
    ),
    Case(
        "string value by name",
        lambda n, r: _instances({**_named(n, r), "mean radius": "big"}),
        422,
        "invalid_value",
        "instances[0].mean radius",
    ),
    Case(
        "NaN",
        lambda n, r: _instances(_with(r, 3, float("nan"))),
        422,
        "invalid_value",
        "instances[0][3]",
    ),
    Case(
        "Infinity",
        lambda n, r: _instances(r, _with(r, 29, float("inf"))),
        422,
        "invalid_value",
        "instances[1][29]",
    ),
    Case(
        "-Infinity by name",
        lambda n, r: _instances({**_named(n, r), "worst area": float("-inf")}),
        422,
        "invalid_value",
        "instances[0].worst area",
    ),
    Case(
        "batch over MODELSERVE_MAX_BATCH",
        lambda n, r: _instances(*[r] * (MAX_BATCH + 1)),
        413,
        "batch_too_large",
        "instances",
    ),
    Case(
        "body over the size limit",
        lambda n, r: b'{"instances": [' + b" " * DEFAULT_BODY_LIMIT + b"]}",
        413,
        "body_too_large",
        "body",
    ),
    Case(
        "body over the size limit, chunked",
        lambda n, r: _chunked_oversize(),
        413,
        "body_too_large",
        "body",
    ),
    Case(
        "unknown model",
        lambda n, r: _instances(r),
        404,
        "unknown_model",
        "model",
        path="/v1/models/nope:predict",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_4xx_naming_the_field(
    case: Case, make_client: Callable[..., TestClient], registry: Registry
) -> None:
    client = make_client(max_batch=MAX_BATCH)
    artifact = registry.load("breast-cancer", "1")
    names, row = artifact.metadata.feature_names, artifact.metadata.example

    response = client.post(
        case.path, content=case.body(names, row), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["status"] == case.status
    assert error["type"] == case.type
    assert error["field"] == case.field
    assert error["message"]

    # The service still answers correctly afterwards.
    good = client.post("/predict", json={"instances": [row]})
    assert good.status_code == 200, good.text
    expected = artifact.estimator.predict_proba(np.asarray([row]))
    assert good.json()["probabilities"] == expected.tolist()
