"""MLflow's ``ScoringServerClient`` (mlflow-skinny) and every payload ``mlflow models serve``
documents, unmodified and in their default settings, against modelserve's MLflow routes.

The client script (``clients/mlflow_calls.py``) runs in mlflow-skinny's own virtualenv. It
waits with ``wait_server_ready`` (``/ping``), reads ``get_version``, then calls ``invoke`` with
a pandas DataFrame (for the default model also ``pd.DataFrame(X)``, columns ``0, 1, ...``), an
ndarray, a list of rows and a dict of column arrays (each also with ``params``) and a JSON text
(``invoke`` drops ``params`` for a text): on the default model at ``/invocations`` and, since
the client takes only a host and a port, on the churn pipeline through a port of
``"<port>/models/churn"``. Beside it, the bodies of MLflow's docs posted with ``requests``:
``dataframe_split``, ``dataframe_records``, ``instances`` and ``inputs`` (rows, records, or an
object of columns), each without and with ``params``, and ``text/csv`` from
``DataFrame.to_csv(index=False)`` (MLflow's server takes no ``params`` with CSV), on both
models, the churn frame's missing tenures as MLflow's serializer writes them (``NaN``) and as
an empty CSV cell. Batches of 1 and 50. Every prediction, raw and as ``PredictionsResponse``
decodes it, must be the model's own in-process answer, of the same type (int or str); a
request of the wrong width must be MLflow's error body, as its ``RestException`` parses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_breast_cancer

from app import __version__
from tests.helpers.interop import (
    BATCHES,
    DEFAULT,
    Served,
    cancer_rows,
    check,
    columns,
    run_client,
)  # fmt: skip
from tests.helpers.mixed import MIXED

pytestmark = pytest.mark.e2e
PARAMS = {"temperature": 0.5, "max_tokens": 20}  # MLflow's docs' example; models ignore them
CLIENT_DATA = {DEFAULT: ("dataframe", "array_dataframe", "ndarray", "list", "dict"),
               MIXED: ("dataframe", "ndarray", "list", "dict")}  # fmt: skip
FORMATS = ("dataframe_split", "dataframe_records", "instances_rows", "instances_records",
           "inputs_rows", "inputs_columns")  # fmt: skip


def _frames() -> dict[str, dict[str, list[Any]]]:
    names = [str(name) for name in load_breast_cancer().feature_names]
    cancer = {name: cancer_rows()[:, j].tolist() for j, name in enumerate(names)}
    return {DEFAULT: cancer, MIXED: columns(max(BATCHES))}


def _calls() -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    for n in BATCHES:
        for model in (DEFAULT, MIXED):
            for params in (None, PARAMS):
                calls += [
                    {"via": "client", "model": model, "n": n, "data": data, "params": params}
                    for data in CLIENT_DATA[model]
                ]
                calls += [
                    {"via": "http", "model": model, "n": n, "format": fmt, "params": params,
                     "content_type": "application/json"}
                    for fmt in FORMATS
                ]  # fmt: skip
            calls.append({"via": "client", "model": model, "n": n, "data": "str", "params": None})
            calls.append(
                {"via": "http", "model": model, "n": n, "format": "csv", "params": None,
                 "content_type": "text/csv"}
            )  # fmt: skip
    return calls


def exchange(http: str, grpc: str, workdir: Path) -> dict[str, Any]:
    """The calls made by MLflow's client and MLflow's documented bodies against ``http``."""
    host, port = http.rsplit(":", 1)
    wrong_width = [row[:-1] for row in cancer_rows()[:2].tolist()]
    spec = {"host": host, "port": int(port), "frames": _frames(), "calls": _calls(),
            "bad": wrong_width}  # fmt: skip
    return run_client("mlflow", "mlflow_calls.py", spec, workdir)


def verify(served: Served, report: dict[str, Any]) -> None:
    assert report["version"] == __version__
    for call, got in zip(_calls(), report["calls"], strict=True):
        model, n = call["model"], call["n"]
        how = call.get("data") or call["format"]
        where = f"mlflow {call['via']} {how}, {model}, {n} rows, params {call['params']}"
        if call["via"] == "http":
            assert got["status"] == 200, where
        else:  # PredictionsResponse.get_predictions(): a one-column DataFrame, an ndarray
            assert got["dataframe_shape"] == [n, 1], where
            check(served, model, n, got["dataframe"], None, f"{where}, as a DataFrame")
            check(served, model, n, got["ndarray"], None, f"{where}, as an ndarray")
        check(served, model, n, got["raw"], None, where)
    bad = report["bad"]
    says = "inputs[0]: expected 30 features, got 29"
    assert bad["status"] == 422 and bad["body"] == {
        "error_code": "INVALID_PARAMETER_VALUE", "message": says
    }, bad  # fmt: skip
    assert bad["error_code"] == "INVALID_PARAMETER_VALUE" and says in bad["message"], bad
    assert bad["raised"] is not None and "error code 422" in bad["raised"], bad
    assert says in bad["raised"], bad


def test_mlflow_client_and_documented_payloads_get_the_models_own_answers(
    served: Served, tmp_path: Path
) -> None:
    verify(served, exchange(served.http, served.grpc, tmp_path))
