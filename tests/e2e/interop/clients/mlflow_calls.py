"""An MLflow user's script, run in mlflow-skinny's own virtualenv, never in modelserve's.

``python mlflow_calls.py SPEC.json`` reads ``{"host", "port", "frames": {model: {column:
[values]}}, "calls": [...], "bad": [[...]]}``. Each frame becomes the pandas DataFrame a user
holds (NaN for a missing value). A call is either

- ``{"via": "client", "model", "n", "data", "params"}``: ``ScoringServerClient(host,
  port).invoke(data, params=params)``, ``data`` being the frame (``dataframe``), a frame of
  its values (``array_dataframe``, columns ``0, 1, ...``), its values (``ndarray``, ``list``),
  its columns as arrays (``dict``) or a JSON text (``str``). The client has no model argument
  and only formats ``http://{host}:{port}``, so a port of ``"<port>/models/churn"`` reaches
  the churn model;
- ``{"via": "http", "model", "n", "format", "params", "content_type"}``: a body in one of the
  formats ``mlflow models serve`` documents, built from the frame with pandas as the docs show
  (``to_dict(orient="split" | "records" | "list")``, ``to_csv(index=False)``), serialized by
  ``json.dumps`` (which writes a missing value as ``NaN``, as MLflow's serializer does) and
  posted with ``requests`` to ``/invocations`` or ``/models/<model>/invocations``.

It prints JSON: the server's ``/version`` (``get_version``), per call the raw ``predictions``
and what ``PredictionsResponse.get_predictions`` decodes them to (a DataFrame's first column
and an ndarray, as lists), and for a bad request (``bad`` rows of the wrong width) the
exception ``invoke`` raises and the error body as MLflow's REST layer parses it
(``RestException``). Only mlflow-skinny and its dependencies are importable here.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import pandas as pd
import requests
from mlflow.exceptions import RestException  # type: ignore[import-not-found,unused-ignore]
from mlflow.pyfunc.scoring_server.client import (  # type: ignore[import-not-found,unused-ignore]
    ScoringServerClient,
)

DEFAULT = "breast-cancer"


def client_for(spec: dict[str, Any], model: str) -> Any:
    port = spec["port"] if model == DEFAULT else f"{spec['port']}/models/{model}"
    return ScoringServerClient(spec["host"], port)  # type: ignore[no-untyped-call,unused-ignore]


def client_data(frame: pd.DataFrame, kind: str) -> Any:
    if kind == "dataframe":
        return frame
    if kind == "array_dataframe":  # pd.DataFrame(X): columns 0, 1, ... name positions
        return pd.DataFrame(frame.to_numpy())
    if kind == "ndarray":
        return frame.to_numpy()
    if kind == "list":
        return frame.to_numpy().tolist()
    if kind == "dict":
        return {str(name): column.to_numpy() for name, column in frame.items()}
    if kind == "str":
        return json.dumps({"dataframe_split": frame.to_dict(orient="split")})
    raise ValueError(kind)


def body(frame: pd.DataFrame, fmt: str, params: dict[str, Any] | None) -> str:
    if fmt == "csv":
        text: str = frame.to_csv(index=False)
        return text
    split = frame.to_dict(orient="split")
    payloads: dict[str, dict[str, Any]] = {
        "dataframe_split": {"dataframe_split": split},
        "dataframe_records": {"dataframe_records": frame.to_dict(orient="records")},
        "instances_rows": {"instances": split["data"]},
        "instances_records": {"instances": frame.to_dict(orient="records")},
        "inputs_rows": {"inputs": split["data"]},
        "inputs_columns": {"inputs": frame.to_dict(orient="list")},
    }
    payload = payloads[fmt]
    if params is not None:
        payload["params"] = params
    return json.dumps(payload)


def decoded(response: Any) -> dict[str, Any]:
    frame = response.get_predictions()
    array = response.get_predictions(predictions_format="ndarray")
    return {
        "raw": response["predictions"],
        "dataframe": frame.iloc[:, 0].tolist(),
        "dataframe_shape": list(frame.shape),
        "ndarray": array.tolist(),
    }


def call(spec: dict[str, Any], frames: dict[str, pd.DataFrame], c: dict[str, Any]) -> Any:
    frame = frames[c["model"]].head(c["n"])
    if c["via"] == "client":
        data = client_data(frame, c["data"])
        return decoded(client_for(spec, c["model"]).invoke(data, params=c["params"]))
    path = "/invocations" if c["model"] == DEFAULT else f"/models/{c['model']}/invocations"
    response = requests.post(
        f"http://{spec['host']}:{spec['port']}{path}",
        data=body(frame, c["format"], c["params"]),
        headers={"Content-Type": c["content_type"]},
    )
    return {"status": response.status_code, "raw": response.json().get("predictions")}


def bad(spec: dict[str, Any]) -> dict[str, Any]:
    rows = np.asarray(spec["bad"], dtype=np.float64)
    try:
        client_for(spec, DEFAULT).invoke(rows)
        raised = None
    except Exception as exc:  # the client raises a bare Exception with the response text
        raised = str(exc)
    response = requests.post(
        f"http://{spec['host']}:{spec['port']}/invocations",
        data=json.dumps({"inputs": rows.tolist()}),
        headers={"Content-Type": "application/json"},
    )
    parsed = RestException(response.json())  # type: ignore[no-untyped-call,unused-ignore]
    return {
        "raised": raised,
        "status": response.status_code,
        "body": response.json(),
        "error_code": parsed.error_code,
        "message": parsed.message,
    }


def main() -> None:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    frames = {model: pd.DataFrame(columns) for model, columns in spec["frames"].items()}
    client = client_for(spec, DEFAULT)
    client.wait_server_ready(timeout=30)
    report = {
        "version": client.get_version(),
        "calls": [call(spec, frames, c) for c in spec["calls"]],
        "bad": bad(spec),
    }
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
