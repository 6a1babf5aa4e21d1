"""A tritonclient user's script, run in tritonclient's own virtualenv, never in modelserve's.

``python tritonclient_infer.py SPEC.json`` reads ``{"url", "calls": [{"model", "inputs":
[{"name", "datatype", "values"}], "outputs": null | [names]}]}``, makes each call with the
official client as its documentation shows (``InferInput.set_data_from_numpy``, whose default
sends binary tensor data; no requested outputs, or ``InferRequestedOutput``, binary by
default) and prints JSON: the server's extensions, and per call the response header and each
output's numpy dtype, shape and values (bytes decoded as UTF-8; floats round-trip exactly).
Only tritonclient and numpy are importable here.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.http as httpclient  # type: ignore[import-not-found,unused-ignore]

NUMPY: dict[str, Any] = {"FP64": np.float64, "INT64": np.int64, "BOOL": np.bool_, "BYTES": object}


def call(client: Any, spec: dict[str, Any]) -> dict[str, Any]:
    inputs = []
    for tensor in spec["inputs"]:
        array = np.array(tensor["values"], dtype=NUMPY[tensor["datatype"]])
        infer_input = httpclient.InferInput(tensor["name"], list(array.shape), tensor["datatype"])
        infer_input.set_data_from_numpy(array)
        inputs.append(infer_input)
    outputs = spec["outputs"]
    requested = None if outputs is None else [httpclient.InferRequestedOutput(n) for n in outputs]
    result = client.infer(spec["model"], inputs, outputs=requested)
    response = result.get_response()
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
    client = httpclient.InferenceServerClient(url=spec["url"])
    try:
        report = {
            "extensions": client.get_server_metadata()["extensions"],
            "calls": [call(client, c) for c in spec["calls"]],
        }
    finally:
        client.close()
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
