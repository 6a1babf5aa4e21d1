"""The OIP v2 gRPC service of a real ``modelserve serve``: two workers under load, SIGTERM.

Two workers each bind ``MODELSERVE_GRPC_PORT`` (SO_REUSEPORT). Sixteen clients, each on its own
channel, send single-row ModelInfer calls at once, typed and raw in turn, for a tree model the
server may merge requests for (``tests/helpers/toy_models``, 5 ms a call): every answer must be
the model's in-process to the last bit, rows must be merged into batches (fewer model calls
than rows), one bad call per client amid the load must be INVALID_ARGUMENT naming the input,
and /metrics must count exactly the calls sent, by outcome.
Then a slow model: calls in flight when SIGTERM arrives are all answered before it exits (0).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from app.registry.store import Registry
from tests.helpers.grpc_client import infer_request, outputs, stub
from tests.helpers.oip_tensors import bits
from tests.helpers.promtext import total
from tests.helpers.support import Server, free_port, wait_all_workers_ready
from tests.helpers.toy_models import TOY, iris, toy_env, toy_registry

pytestmark = pytest.mark.e2e

CLIENTS, CALLS = 16, 25
BAD_AT = 10  # each client's call that sends a row of 3 features instead of 4
OUTPUTS = ("predict", "predict_proba")
OK_INFER = {"method": "ModelInfer", "code": "OK"}


def _listening_pids(port: int) -> set[str]:
    done = subprocess.run(
        ["ss", "-Htlnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    )
    return {part.split(",")[0] for part in done.stdout.split("pid=")[1:]}


def test_two_workers_answer_sixteen_clients_exactly_and_count_every_call(tmp_path: Path) -> None:
    registry = tmp_path / "models"
    toy_registry(registry, delay_s=0.005)
    port = free_port()
    env = toy_env(grpc_port=str(port), workers="2", batch_max_wait_ms="5")
    model = Registry(registry).load(TOY, "1").estimator
    data, _, _ = iris()
    with Server(registry, workdir=tmp_path, env=env) as server:
        server.wait_ready()
        wait_all_workers_ready(server.url)
        assert len(_listening_pids(port)) == 2, "both workers listen on the gRPC port"
        before = httpx.get(server.url + "/metrics").text
        failures: list[str] = []
        start = threading.Barrier(CLIENTS)

        def client(k: int) -> None:
            rows = data[np.random.default_rng(k).integers(0, len(data), CALLS)]
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                grpc_stub = stub(channel)
                start.wait()
                for i, row in enumerate(rows):
                    if i == BAD_AT:  # one bad call amid the load: refused, naming the input
                        bad = infer_request(TOY, [("x", "FP64", row[None, :3])], i % 2 == 1)
                        try:
                            grpc_stub.ModelInfer(bad, timeout=30)
                            failures.append(f"client {k}: a 3-feature row was answered")
                        except grpc.RpcError as error:
                            if error.code() != grpc.StatusCode.INVALID_ARGUMENT or (
                                "inputs[0]" not in (error.details() or "")
                            ):
                                failures.append(f"client {k}: {error.code()} {error.details()}")
                    request = infer_request(TOY, [("x", "FP64", row[None, :])], i % 2 == 1, OUTPUTS)
                    got = outputs(grpc_stub.ModelInfer(request, timeout=30))
                    want = model.predict_proba(row[None, :]).ravel().tolist()
                    if got["predict"][2] != model.predict(row[None, :]).tolist() or bits(
                        got["predict_proba"][2]
                    ) != bits(want):
                        failures.append(f"client {k} call {i}: {got}")

        threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not failures, failures[:3]
        after = httpx.get(server.url + "/metrics").text
    sent = CLIENTS * CALLS
    grpc_calls = "modelserve_grpc_requests_total"
    assert total(after, grpc_calls, OK_INFER) - total(before, grpc_calls, OK_INFER) == sent
    bad = {"method": "ModelInfer", "code": "INVALID_ARGUMENT"}
    assert total(after, grpc_calls, bad) - total(before, grpc_calls, bad) == CLIENTS
    assert total(after, grpc_calls) - total(before, grpc_calls) == sent + CLIENTS  # nothing else
    rows = total(after, "modelserve_batch_size_sum", {"model": TOY}) - total(
        before, "modelserve_batch_size_sum", {"model": TOY}
    )
    model_calls = total(after, "modelserve_batch_size_count", {"model": TOY}) - total(
        before, "modelserve_batch_size_count", {"model": TOY}
    )
    assert rows == sent and model_calls < sent, f"{sent} rows in {model_calls} model calls"


def test_sigterm_lets_the_calls_in_flight_finish(tmp_path: Path) -> None:
    toy_registry(tmp_path / "models", delay_s=0.8)
    port = free_port()
    X, _, _ = iris()
    model = Registry(tmp_path / "models").load(TOY, "1").estimator
    env = toy_env(grpc_port=str(port), batch_max_rows="1")  # one model call per request
    with Server(tmp_path / "models", workdir=tmp_path, env=env) as server:
        server.wait_ready()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc_stub = stub(channel)
            calls: list[Any] = [
                grpc_stub.ModelInfer.future(
                    infer_request(TOY, [("x", "FP64", X[k : k + 1])], k % 2 == 0, ("predict",)),
                    timeout=30,
                )
                for k in range(4)
            ]
            time.sleep(0.3)  # all four arrived; the first is in the model, the rest queued
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            answers = [outputs(call.result())["predict"][2] for call in calls]
            assert answers == [model.predict(X[k : k + 1]).tolist() for k in range(4)]
            assert server.proc.wait(30) == 0, server.logs()
