"""A KServe SDK user's script, run in kserve's own virtualenv, never in modelserve's.

``python kserve_calls.py SPEC.json`` reads ``{"http", "grpc", "models": [names], "v1":
[{"model", "instances"}], "v2": [{"protocol": "rest" | "grpc", "model", "inputs": [{"name",
"datatype", "values"}], "outputs": null | [names]}]}`` and makes each call with the SDK's async
clients as its documentation shows, in their default settings, under ``asyncio.run``:

- V1: ``InferenceRESTClient(RESTConfig(protocol="v1"))``, ``infer(base_url, data={"instances":
  ...}, model_name=...)`` (the client encodes the dict with orjson, which writes a NaN as
  ``null``), ``is_server_live`` (``GET /``) and ``is_model_ready``;
- V2 REST: ``InferenceRESTClient(RESTConfig(protocol="v2"))`` with an ``InferRequest`` whose
  ``InferInput``s are set by ``set_data_from_numpy`` (binary tensor data by default), no
  requested outputs or ``RequestedOutput``s, and ``is_server_ready`` / ``is_model_ready``;
- V2 gRPC: ``InferenceGRPCClient(url=grpc)`` with the same requests (``to_grpc()``: raw input
  contents), ``is_server_ready`` / ``is_model_ready``.

It prints JSON: the readiness answers, each V1 response as the client returned it, and per V2
call each output's numpy dtype, shape and values from ``as_numpy()`` (bytes decoded as UTF-8;
floats round-trip exactly). Only kserve and its dependencies are importable here.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np
from kserve import (  # type: ignore[import-not-found,unused-ignore]
    InferenceGRPCClient,
    InferenceRESTClient,
    InferInput,
    InferRequest,
    RESTConfig,
)
from kserve.protocol.infer_type import (  # type: ignore[import-not-found,unused-ignore]
    RequestedOutput,
)

NUMPY: dict[str, Any] = {"FP64": np.float64, "INT64": np.int64, "BOOL": np.bool_, "BYTES": object}


def infer_request(spec: dict[str, Any]) -> Any:
    inputs = []
    for tensor in spec["inputs"]:
        array = np.array(tensor["values"], dtype=NUMPY[tensor["datatype"]])
        infer_input = InferInput(tensor["name"], list(array.shape), tensor["datatype"])
        infer_input.set_data_from_numpy(array)
        inputs.append(infer_input)
    outputs = spec["outputs"]
    requested = None if outputs is None else [RequestedOutput(name) for name in outputs]
    return InferRequest(model_name=spec["model"], infer_inputs=inputs, request_outputs=requested)


def decoded(response: Any) -> dict[str, Any]:
    answers = {}
    for output in response.outputs:
        array = output.as_numpy()
        values = [v.decode() if isinstance(v, bytes) else v for v in array.ravel().tolist()]
        answers[output.name] = {
            "datatype": output.datatype,
            "dtype": str(array.dtype),
            "shape": list(array.shape),
            "values": values,
        }
    return answers


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    url, models = f"http://{spec['http']}", spec["models"]
    v1 = InferenceRESTClient(RESTConfig(protocol="v1"))
    v2 = InferenceRESTClient(RESTConfig(protocol="v2"))
    grpc = InferenceGRPCClient(url=spec["grpc"])
    try:
        ready = {
            "v1_server": await v1.is_server_live(url),
            "v2_live": await v2.is_server_live(url),
            "grpc_live": await grpc.is_server_live(),
            "v1_models": [await v1.is_model_ready(url, name) for name in models],
            "v2_server": await v2.is_server_ready(url),
            "v2_models": [await v2.is_model_ready(url, name) for name in models],
            "grpc_server": await grpc.is_server_ready(),
            "grpc_models": [await grpc.is_model_ready(name) for name in models],
        }
        v1_answers = [
            await v1.infer(url, data={"instances": c["instances"]}, model_name=c["model"])
            for c in spec["v1"]
        ]
        v2_answers = []
        for call in spec["v2"]:
            if call["protocol"] == "rest":
                response = await v2.infer(url, data=infer_request(call), model_name=call["model"])
            else:
                response = await grpc.infer(infer_request(call))
            v2_answers.append(decoded(response))
    finally:
        await v1.close()
        await v2.close()
        await grpc.close()
    return {"ready": ready, "v1": v1_answers, "v2": v2_answers}


def main() -> None:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)  # NaN in the spec is a float NaN here, as a user's data holds it
    json.dump(asyncio.run(run(spec)), sys.stdout)


if __name__ == "__main__":
    main()
