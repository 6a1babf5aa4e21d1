"""The same one-row prediction over each protocol a client may speak, one modelserve process.

For the default (logistic) and the forest model, at c=1 and c=64: JSON REST (modelserve's own
``{"instances": [[...]]}`` route and OIP v2 JSON), OIP v2 binary tensors (one ``[1, 30]`` FP64
tensor as raw bytes, outputs asked for as binary: what tritonclient and KServe's client send by
default) and OIP v2 gRPC (``ModelInfer`` with ``raw_input_contents``, as tritonclient.grpc
sends it). wrk drives HTTP/1.1; h2load (``apt install nghttp2-client``) drives gRPC as what it
is on the wire, HTTP/2 POSTs of one length-prefixed protobuf message, with one stream per
connection so that c is the number of calls in flight, as for wrk. h2load cannot read gRPC's
status (a trailer), so every body is first sent once with grpcio and checked, and after each
run /metrics must count no ModelInfer call that ended other than OK, but for the at most c
calls in flight when h2load stops (CANCELLED).
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import struct
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np

from app.api.grpc import grpc_predict_v2_pb2 as pb2
from bench.models import FOREST, LOGISTIC
from bench.servers import BenchServer, WrkResult, wrk
from tests.helpers.grpc_client import stub
from tests.helpers.promtext import samples
from tests.helpers.support import free_port

PROTOCOLS = {
    "rest-json": "JSON REST `/predict`",
    "v2-json": "OIP v2 JSON",
    "v2-binary": "OIP v2 binary tensors",
    "grpc": "OIP v2 gRPC",
}
MODELS = (LOGISTIC, FOREST)
CONCURRENCY = (1, 64)
BINARY_HEADER = "Inference-Header-Content-Length"
GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"


@dataclass(frozen=True)
class Body:
    path: Path
    headers: tuple[str, ...] = ()


def _v2_tensor(row: np.ndarray[Any, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "input-0", "shape": [1, row.size], "datatype": "FP64", **extra}


def http_bodies(work: Path, model: str, row: np.ndarray[Any, Any]) -> dict[str, tuple[str, Body]]:
    """Each HTTP protocol's path and body for one row of ``model``."""
    rest = work / f"{model}-rest.json"
    rest.write_text(json.dumps({"instances": [row.tolist()]}))
    v2 = work / f"{model}-v2.json"
    v2.write_text(json.dumps({"inputs": [_v2_tensor(row, data=row.tolist())]}))
    raw = row.astype("<f8").tobytes()
    header = json.dumps(
        {
            "inputs": [_v2_tensor(row, parameters={"binary_data_size": len(raw)})],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    binary = work / f"{model}-v2.bin"
    binary.write_bytes(header + raw)
    infer = f"/v2/models/{model}/infer"
    predict = "/predict" if model == LOGISTIC else f"/v1/models/{model}:predict"
    return {
        "rest-json": (predict, Body(rest)),
        "v2-json": (infer, Body(v2)),
        "v2-binary": (
            infer,
            Body(binary, ("application/octet-stream", f"{BINARY_HEADER}: {len(header)}")),
        ),
    }


def grpc_request(model: str, row: np.ndarray[Any, Any]) -> pb2.ModelInferRequest:
    tensor = pb2.ModelInferRequest.InferInputTensor(
        name="input-0", datatype="FP64", shape=[1, row.size]
    )
    request = pb2.ModelInferRequest(model_name=model, inputs=[tensor])
    request.raw_input_contents.append(row.astype("<f8").tobytes())
    return request


def grpc_body(work: Path, model: str, request: pb2.ModelInferRequest) -> Path:
    """One gRPC message as it travels in an HTTP/2 DATA frame: not compressed, its length."""
    message = request.SerializeToString()
    path = work / f"{model}.grpc"
    path.write_bytes(struct.pack(">?I", False, len(message)) + message)
    return path


def h2load(
    url: str, body: Path, connections: int, seconds: float, log: Path | None = None
) -> WrkResult:
    """h2load POSTing the gRPC message ``body`` for ``seconds`` at ``connections`` calls in
    flight; latencies from its per-request log (``log``: a fresh file, h2load appends)."""
    log = log or body.with_suffix(f".c{connections}.tsv")
    log.unlink(missing_ok=True)
    cmd = [
        "h2load", f"-t{min(2, connections)}", f"-c{connections}", "-m1",
        f"-D{max(1, round(seconds))}", "-d", str(body),
        "-H", "content-type: application/grpc", "-H", "te: trailers",
        f"--log-file={log}", url,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=True)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out.stdout)
    rate = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out.stdout)
    assert done and rate, out.stdout
    micros = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines() if line)
    succeeded = int(done.group(2))
    return WrkResult(
        requests=succeeded,
        seconds=succeeded / float(rate.group(3)),
        socket_errors=int(done.group(1)) - succeeded,
        non_2xx=0,
        p50_ms=statistics.median(micros) / 1000,
        p99_ms=micros[min(len(micros) - 1, int(0.99 * len(micros)))] / 1000,
        max_ms=micros[-1] / 1000,
    )


def _infer_codes(metrics_url: str) -> Counter[str]:
    """ModelInfer calls so far, by gRPC status code, from /metrics."""
    text = httpx.get(metrics_url, timeout=10).text
    codes: Counter[str] = Counter()
    for sample in samples(text, "modelserve_grpc_requests_total"):
        if sample.labels.get("method") == "ModelInfer":
            codes[sample.labels["code"]] += int(sample.value)
    return codes


def protocol_rows(
    work: Path, registry: Path, rows: dict[str, np.ndarray[Any, Any]], seconds: float,
    warmup: float,
) -> dict[tuple[str, str, int], WrkResult]:  # fmt: skip
    """(protocol, model, c) → result, all from one modelserve process."""
    if shutil.which("h2load") is None:
        raise SystemExit("bench/protocols.py needs h2load: apt install nghttp2-client")
    port = free_port()
    results: dict[tuple[str, str, int], WrkResult] = {}
    env = {"MODELSERVE_GRPC_PORT": str(port)}
    with BenchServer.start("modelserve", work, registry, LOGISTIC, env=env) as server:
        for model in MODELS:
            row = rows[model]
            request = grpc_request(model, row)
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                answer = stub(channel).ModelInfer(request, timeout=30)
                assert answer.outputs, answer
            for protocol, (path, body) in http_bodies(work, model, row).items():
                url = server.url + path
                wrk(url, body.path, 16, warmup, headers=body.headers)
                for c in CONCURRENCY:
                    results[(protocol, model, c)] = wrk(
                        url, body.path, c, seconds, headers=body.headers
                    )
            target = f"http://127.0.0.1:{port}{GRPC_PATH}"
            message = grpc_body(work, model, request)
            h2load(target, message, 16, warmup)
            for c in CONCURRENCY:
                before = _infer_codes(server.url + "/metrics")
                results[("grpc", model, c)] = h2load(target, message, c, seconds)
                codes = _infer_codes(server.url + "/metrics") - before
                # h2load resets the streams still open when its time is up: CANCELLED, at most c.
                failed = {k: n for k, n in codes.items() if k not in ("OK", "CANCELLED")}
                assert not failed and codes["CANCELLED"] <= c, f"gRPC calls failed: {codes}"
    return results


def report(results: dict[tuple[str, str, int], WrkResult], kinds: dict[str, str]) -> list[str]:
    def cell(r: WrkResult | None) -> str:
        return "-" if r is None else f"{r.rps:,.0f} ({r.p50_ms:.2f} / {r.p99_ms:.1f})"

    lines = [
        "Protocols, one modelserve process, single-row calls: req/s (p50 ms / p99 ms). "
        "HTTP by wrk, gRPC by h2load (HTTP/2, one stream per connection).",
        "",
        f"| model | c | {' | '.join(PROTOCOLS.values())} |",
        f"|---|---|{'---|' * len(PROTOCOLS)}",
    ]
    for model in MODELS:
        for c in CONCURRENCY:
            cells = " | ".join(cell(results.get((p, model, c))) for p in PROTOCOLS)
            lines.append(f"| {kinds[model]} | {c} | {cells} |")
    return lines
