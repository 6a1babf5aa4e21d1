"""A row that is a bare value, not a list or object, is described as such (issue #15)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize(
    ("instances", "got"),
    [([3], "the number 3"), ([2.5], "the number 2.5"), (["x"], "the string 'x'")],
)
def test_a_bare_value_row_names_the_shape_problem(
    client: TestClient, instances: list[object], got: str
) -> None:
    resp = client.post("/predict", json={"instances": instances})
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["type"] == "invalid_request"
    assert error["field"] == "instances[0]"
    assert "out of range" not in error["message"]
    assert f"got {got}" in error["message"]
    assert "a list of feature values or an object" in error["message"]
