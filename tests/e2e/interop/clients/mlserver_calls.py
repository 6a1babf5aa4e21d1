"""An MLServer user's script, run in mlserver's own virtualenv, never in modelserve's.

``python mlserver_calls.py SPEC.json`` reads ``{"http", "rows": {model: rows}, "types",
"calls": [...], "infer": [...]}``. The rows are the default model's ``[N, 30]`` matrix and the
churn columns, built here as the DataFrame a user has (object str columns, int64, float64 with
NaN for a missing tenure, bool).

Each call uses mlserver's codecs as its documentation shows a client doing it against a V2
server: ``NumpyRequestCodec.encode_request(array)`` or ``PandasCodec.encode_request(frame)``,
``RequestOutput``s when outputs are asked for, ``POST /v2/models/{name}/infer`` with
``requests``, either ``json=request.model_dump()`` (pandas with ``use_bytes=False``: bytes are
not JSON) or ``data=request.model_dump_json()`` (the codec's default ``use_bytes``), and the
answer read as ``InferenceResponse(**response.json())``, each output decoded with
``NumpyCodec.decode_output``, and without requested outputs with the request codec too
(``NumpyRequestCodec.decode_response``, ``PandasCodec.decode_response``).

Each ``infer`` entry runs ``mlserver infer -u <http> -m <model> -i <file> -o <file> <options>``
on a file of codec-encoded requests (``model_dump_json()``, one a line, with ids) and reports
the output file's lines. It prints JSON; only mlserver and its dependencies (and requests) are
importable here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests  # type: ignore[import-untyped,import-not-found,unused-ignore]
from mlserver.codecs import (  # type: ignore[import-not-found,unused-ignore]
    NumpyCodec,
    NumpyRequestCodec,
    PandasCodec,
)
from mlserver.types import (  # type: ignore[import-not-found,unused-ignore]
    InferenceRequest,
    InferenceResponse,
    RequestOutput,
)

DEFAULT = "breast-cancer"
DTYPES: dict[str, Any] = {"BYTES": object, "INT64": np.int64, "FP64": np.float64, "BOOL": np.bool_}


def frames(spec: dict[str, Any]) -> dict[str, Any]:
    """Each model's rows as its user holds them: an array, or a DataFrame."""
    held: dict[str, Any] = {}
    for model, rows in spec["rows"].items():
        if model == DEFAULT:
            held[model] = np.array(rows, dtype=np.float64)
        else:
            # Strings as object columns: pandas 3's default str dtype is one mlserver 1.7.1's
            # PandasCodec cannot encode (KeyError 'O' in its dtype table).
            held[model] = pd.DataFrame(
                {name: pd.Series(values, dtype=DTYPES[spec["types"][name]])
                 for name, values in rows.items()}
            )  # fmt: skip
    return held


def encode(model: str, rows: Any, n: int, outputs: list[str] | None, **kw: Any) -> Any:
    if model == DEFAULT:
        request = NumpyRequestCodec.encode_request(rows[:n], **kw)
    else:
        request = PandasCodec.encode_request(rows.head(n), **kw)
    if outputs is not None:
        request.outputs = [RequestOutput(name=name) for name in outputs]
    return request


def described(array: Any) -> dict[str, Any]:
    values = [v.decode() if isinstance(v, bytes) else v for v in np.ravel(array).tolist()]
    return {"dtype": str(array.dtype), "shape": list(array.shape), "values": values}


def call(url: str, held: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    model, outputs = spec["model"], spec["outputs"]
    endpoint = f"{url}/v2/models/{model}/infer"
    if spec["body"] == "json":
        request = encode(model, held[model], spec["n"], outputs, use_bytes=False)
        response = requests.post(endpoint, json=request.model_dump())
    else:
        request = encode(model, held[model], spec["n"], outputs)
        response = requests.post(
            endpoint,
            data=request.model_dump_json(),
            headers={"Content-Type": "application/json"},
        )
    response.raise_for_status()
    inference_response = InferenceResponse(**response.json())
    report: dict[str, Any] = {
        "outputs": {
            output.name: described(NumpyCodec.decode_output(output))
            for output in inference_response.outputs
        }
    }
    if outputs is None:  # the request codec reads a response of columns
        if model == DEFAULT:
            report["decoded"] = described(NumpyRequestCodec.decode_response(inference_response))
        else:
            frame = PandasCodec.decode_response(inference_response)
            report["decoded"] = {"columns": list(frame.columns), **described(frame["predict"])}
    return report


def infer(http: str, held: dict[str, Any], run: dict[str, Any], index: int) -> list[Any]:
    model = run["model"]
    source, sink = Path(f"infer-{index}.in.jsonl"), Path(f"infer-{index}.out.jsonl")
    lines = []
    for line in run["lines"]:
        request: InferenceRequest = encode(model, held[model], line["n"], line["outputs"])
        request.id = line["id"]
        lines.append(request.model_dump_json())
    source.write_text("\n".join(lines) + "\n")
    ran = subprocess.run(
        [sys.executable, "-m", "mlserver.cli.main", "infer", "-u", http, "-m", model,
         "-i", str(source), "-o", str(sink), *run["options"]],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    if ran.returncode != 0:
        sys.exit(f"mlserver infer {' '.join(run['options'])} failed:\n{ran.stderr[-3000:]}")
    return [json.loads(line) for line in sink.read_text().splitlines() if line.strip()]


def main() -> None:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    held = frames(spec)
    url = f"http://{spec['http']}"
    report = {
        "calls": [call(url, held, c) for c in spec["calls"]],
        "infer": [infer(spec["http"], held, run, k) for k, run in enumerate(spec["infer"])],
    }
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
