"""A tritonclient user's script, run in tritonclient's own virtualenv, never in modelserve's.

``python tritonclient_calls.py SPEC.json`` reads ``{"http", "grpc", "calls": [{"protocol":
"http" | "grpc", "model", "inputs": [{"name", "datatype", "values"}], "outputs": null | [names],
"compression": optional "gzip" | "deflate": HTTP's request and response compression, gRPC's
message compression}]}`` and makes each call with the official client as its documentation shows
(``InferInput.set_data_from_numpy``, whose default sends binary tensor data over HTTP and
``raw_input_contents`` over gRPC; no requested outputs, or ``InferRequestedOutput``, binary by
default). It prints JSON: the server's extensions, and per call the HTTP response header and
each output's numpy dtype, shape and values (bytes decoded as UTF-8; floats round-trip exactly).
Only tritonclient and numpy are importable here.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient  # type: ignore[import-not-found,unused-ignore]
import tritonclient.http as httpclient  # type: ignore[import-not-found,unused-ignore]

NUMPY: dict[str, Any] = {"FP64": np.float64, "INT64": np.int64, "BOOL": np.bool_, "BYTES": object}


def call(clients: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    module = httpclient if spec["protocol"] == "http" else grpcclient
    inputs = []
    for tensor in spec["inputs"]:
        array = np.array(tensor["values"], dtype=NUMPY[tensor["datatype"]])
        infer_input = module.InferInput(tensor["name"], list(array.shape), tensor["datatype"])
        infer_input.set_data_from_numpy(array)
        inputs.append(infer_input)
    outputs = spec["outputs"]
    requested = None if outputs is None else [module.InferRequestedOutput(n) for n in outputs]
    compressed = {}
    if spec.get("compression") and spec["protocol"] == "http":
        compressed = {
            "request_compression_algorithm": spec["compression"],
            "response_compression_algorithm": spec["compression"],
        }
    elif spec.get("compression"):
        compressed = {"compression_algorithm": spec["compression"]}
    result = clients[spec["protocol"]].infer(spec["model"], inputs, outputs=requested, **compressed)
    if spec["protocol"] == "http":
        response = result.get_response()
    else:
        response = result.get_response(as_json=True)
    answers = {}
    for output in response["outputs"]:
        array = result.as_numpy(output["name"])
        values = [v.decode() if isinstance(v, bytes) else v for v in array.ravel().tolist()]
        answers[output["name"]] = {
            "dtype": str(array.dtype),
            "shape": list(array.shape),
            "values": values,
        }
    return {"response": response, "outputs": answers}


def main() -> None:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    clients = {
        "http": httpclient.InferenceServerClient(url=spec["http"]),
        "grpc": grpcclient.InferenceServerClient(url=spec["grpc"]),
    }
    try:
        report = {
            "extensions": clients["http"].get_server_metadata()["extensions"],
            "grpc_ready": clients["grpc"].is_server_ready(),
            "calls": [call(clients, c) for c in spec["calls"]],
        }
    finally:
        for client in clients.values():
            client.close()
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
