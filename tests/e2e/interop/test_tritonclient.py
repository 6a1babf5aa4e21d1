"""NVIDIA's tritonclient, unmodified and in its default settings, over HTTP and gRPC.

``tritonclient.http`` sends tensors as binary data by default (issue #24, point 1) and
``tritonclient.grpc`` as ``raw_input_contents``; both read outputs from raw bytes. The client
script (``clients/tritonclient_calls.py``) runs in tritonclient's own virtualenv: the default
model as one ``[N, 30]`` FP64 tensor, the churn pipeline as one tensor per feature (BYTES from
object arrays of str, INT64, FP64 with NaN for a missing tenure, BOOL), batches of 1 and 50,
with no requested outputs (the client then takes the server's default) and with ``predict``
and ``predict_proba`` requested; also with the client's compression (gzip and deflate: HTTP
request bodies, gRPC messages). Every value must be what the model returns in-process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers.interop import (
    DEFAULT,
    Served,
    check,
    run_client,
    v2_calls,
)  # fmt: skip
from tests.helpers.mixed import MIXED

pytestmark = pytest.mark.e2e
DTYPES = {DEFAULT: "int64", MIXED: "object"}


def _calls() -> list[dict[str, Any]]:
    return v2_calls(("http", "grpc"))


def _compressed_calls() -> list[dict[str, Any]]:
    """The calls of 50 rows, compressed by the client with gzip and with deflate: the HTTP
    request body (``Content-Encoding``), the gRPC message (grpc's own compression)."""
    calls = [c for c in v2_calls(("http", "grpc")) if c["n"] > 1 and c["outputs"] is not None]
    return [{**c, "compression": coding} for coding in ("gzip", "deflate") for c in calls]


def exchange(
    http: str, grpc: str, workdir: Path, calls: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The calls made by tritonclient against ``http`` and ``grpc``; its report."""
    spec = {"http": http, "grpc": grpc, "calls": _calls() if calls is None else calls}
    return run_client("tritonclient", "tritonclient_calls.py", spec, workdir)


def verify(
    served: Served, report: dict[str, Any], calls: list[dict[str, Any]] | None = None
) -> None:
    assert "binary_tensor_data" in report["extensions"]
    assert report["grpc_ready"] is True
    for call, got in zip(_calls() if calls is None else calls, report["calls"], strict=True):
        model, n, protocol = call["model"], call["n"], call["protocol"]
        where = f"tritonclient {protocol}, {model}, {n} rows, outputs {call['outputs']}"
        if protocol == "http":  # every output came back as binary data, as asked by default
            sizes = [
                o.get("parameters", {}).get("binary_data_size") for o in got["response"]["outputs"]
            ]
            assert all(isinstance(s, int) and s > 0 for s in sizes), (where, got["response"])
        predict = got["outputs"]["predict"]
        assert predict["shape"] == [n] and predict["dtype"] == DTYPES[model], where
        proba = got["outputs"].get("predict_proba")
        if call["outputs"] is None:
            assert list(got["outputs"]) == ["predict"], where  # modelserve's default output
        else:
            assert proba["dtype"] == "float64" and proba["shape"] == [n, 2], where
        check(served, model, n, predict["values"], proba and proba["values"], where)


def test_tritonclient_defaults_get_the_models_own_answers(served: Served, tmp_path: Path) -> None:
    verify(served, exchange(served.http, served.grpc, tmp_path))


def test_tritonclient_compressed_requests_get_the_models_own_answers(
    served: Served, tmp_path: Path
) -> None:
    calls = _compressed_calls()
    assert {(c["protocol"], c["compression"]) for c in calls} == {
        (p, c) for p in ("http", "grpc") for c in ("gzip", "deflate")
    }
    verify(served, exchange(served.http, served.grpc, tmp_path, calls), calls)
