"""Seldon's MLServer client side, unmodified and in its default settings: its codecs and
``mlserver infer``.

The client script (``clients/mlserver_calls.py``) runs in mlserver's own virtualenv (with
``requests``, which MLServer's documentation posts with). Its codecs encode the default model's
``[N, 30]`` float64 matrix (``NumpyRequestCodec``) and the churn DataFrame (``PandasCodec``:
object str columns as BYTES, int64, float64 with NaN for a missing tenure sent as null, bool)
as ``[N, 1]`` columns with ``content_type`` parameters; the requests go to
``/v2/models/{name}/infer`` as ``json=request.model_dump()`` and as ``model_dump_json()``
text, batches of 1 and 50, with no requested outputs and with ``predict`` and
``predict_proba``, and the answers are decoded by the codecs. ``mlserver infer`` (tritonclient
underneath) sends files of such requests with its defaults (10 workers, one request per call,
JSON tensors, binary outputs when none are named), with ``--batch-size 2`` (pairs of requests
merged into one call and split again) and with ``--binary-data``. Every value must be what the
model returns in-process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.helpers.interop import (
    BATCHES,
    CHURN_TYPES,
    DEFAULT,
    Served,
    cancer_rows,
    check,
    columns,
    rows,
    run_client,
)  # fmt: skip
from tests.helpers.mixed import MIXED
from tests.helpers.oip_tensors import bits

pytestmark = pytest.mark.e2e
MODELS = (DEFAULT, MIXED)
BOTH = ["predict", "predict_proba"]
LABELS = {DEFAULT: "INT64", MIXED: "BYTES"}
# mlserver infer's options: its defaults, micro-batches that merge requests, binary tensors.
RUNS: tuple[list[str], ...] = ([], ["--batch-size", "2"], ["--binary-data"])
# One file per model and run; with --batch-size 2 each line pairs with its neighbour.
LINES = [
    {"id": f"{n}-{'both' if outputs else 'default'}", "n": n, "outputs": outputs}
    for outputs in (None, BOTH)
    for n in BATCHES
]


def _calls() -> list[dict[str, Any]]:
    return [
        {"model": model, "n": n, "outputs": outputs, "body": body}
        for body in ("json", "text")
        for model in MODELS
        for n in BATCHES
        for outputs in (None, BOTH)
    ]


def _runs() -> list[dict[str, Any]]:
    return [
        {"model": model, "options": options, "lines": LINES} for options in RUNS for model in MODELS
    ]


def exchange(http: str, grpc: str, workdir: Path) -> dict[str, Any]:
    """The calls made with mlserver's codecs and ``mlserver infer`` against ``http`` (MLServer
    has no client of its own for gRPC, so ``grpc`` goes unused); its report."""
    spec = {
        "http": http,
        "rows": {DEFAULT: cancer_rows().tolist(), MIXED: columns(max(BATCHES))},
        "types": CHURN_TYPES,
        "calls": _calls(),
        "infer": _runs(),
    }
    return run_client("mlserver", "mlserver_calls.py", spec, workdir)


def _merging_keeps_bits(served: Served, model: str) -> None:
    """The model answers the first row and the first 50 alike in one call or apart, so a
    merged answer compares with the model's own (else a mismatch would be no server's)."""
    estimator, one, fifty = served.models[model], rows(model, 1), rows(model, max(BATCHES))
    merged = np.vstack([one, fifty]) if model == DEFAULT else pd.concat([one, fifty])
    for method in ("predict", "predict_proba"):
        together = getattr(estimator, method)(merged).ravel().tolist()
        apart = [getattr(estimator, method)(x).ravel().tolist() for x in (one, fifty)]
        assert bits(together) == bits(apart[0] + apart[1]), f"{model}: {method} merged differs"


def _verify_calls(served: Served, report: dict[str, Any]) -> None:
    for call, got in zip(_calls(), report["calls"], strict=True):
        model, n, outputs = call["model"], call["n"], call["outputs"]
        where = f"mlserver codecs ({call['body']}), {model}, {n} rows, outputs {outputs}"
        predict, proba = got["outputs"]["predict"], got["outputs"].get("predict_proba")
        assert predict["shape"] == [n], where
        if model == DEFAULT:
            assert predict["dtype"] == "int64", where
        else:  # NumpyCodec reads BYTES as a numpy str array
            assert predict["dtype"].startswith("<U"), where
        if outputs is None:
            assert list(got["outputs"]) == ["predict"], where  # modelserve's default output
            decoded = got["decoded"]
            if model == MIXED:
                assert decoded["columns"] == ["predict"], where
            assert decoded["shape"] == [n], where
            check(served, model, n, decoded["values"], None, f"{where}, request codec")
        else:
            assert list(got["outputs"]) == BOTH, where
            assert proba["dtype"] == "float64" and proba["shape"] == [n, 2], where
        check(served, model, n, predict["values"], proba and proba["values"], where)


def _verify_infer(served: Served, report: dict[str, Any]) -> None:
    for run, answers in zip(_runs(), report["infer"], strict=True):
        model, merged = run["model"], "--batch-size" in run["options"]
        where = f"mlserver infer {' '.join(run['options']) or '(defaults)'}, {model}"
        assert not [a for a in answers if "error" in a], (where, answers)
        by_id = {answer.get("id"): answer for answer in answers}
        assert len(answers) == len(run["lines"]) and set(by_id) == {
            line["id"] for line in run["lines"]
        }, (where, answers)
        if merged:
            _merging_keeps_bits(served, model)
        for k, line in enumerate(run["lines"]):
            answer, n, outputs = by_id[line["id"]], line["n"], line["outputs"]
            at = f"{where}, request {line['id']}"
            inference_id = answer["parameters"]["inference_id"]
            if merged:  # one call for each pair of lines
                partner = by_id[run["lines"][k ^ 1]["id"]]
                assert inference_id == partner["parameters"]["inference_id"] != line["id"], at
            else:
                assert inference_id == line["id"], at
            got = {output["name"]: output for output in answer["outputs"]}
            assert list(got) == (outputs or ["predict"]), at
            # mlserver infer gives every output a batch dimension: [N] comes back [N, 1].
            predict, proba = got["predict"], got.get("predict_proba")
            assert predict["shape"] == [n, 1] and predict["datatype"] == LABELS[model], at
            if proba is not None:
                assert proba["shape"] == [n, 2] and proba["datatype"] == "FP64", at
            check(served, model, n, predict["data"], proba and proba["data"], at)


def verify(served: Served, report: dict[str, Any]) -> None:
    _verify_calls(served, report)
    _verify_infer(served, report)


def test_mlserver_codecs_and_infer_get_the_models_own_answers(
    served: Served, tmp_path: Path
) -> None:
    verify(served, exchange(served.http, served.grpc, tmp_path))
