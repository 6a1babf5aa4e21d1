"""A refused gRPC call leaves no reference cycle holding its request (issue #26, point 4).

grpc keeps the ``AbortError`` that ``context.abort()`` raises in the call's state: a reference
cycle, freed only when the garbage collector gets to it, often hundreds of calls later. Raised
inside the ``except RequestError`` block, its traceback held the frames that had decoded the
request, and its context the refusal's own: every refused call's megabyte of tensors waited
with it (1,000 calls with a 1 MB string grew a worker by 160 MB).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from app.api.grpc import grpc_predict_v2_pb2 as pb2
from app.config import Settings
from tests.helpers.app_factory import ready_client
from tests.helpers.grpc_client import infer_request, stub
from tests.helpers.mixed import MIXED, register_churn
from tests.helpers.support import copy_registry, free_port

MB = 1024 * 1024


@pytest.fixture(scope="module")
def grpc_stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workdir = tmp_path_factory.mktemp("grpc-refusals")
    registry = copy_registry(workdir / "models")
    register_churn(registry, workdir)
    port = free_port()
    settings = Settings(registry=registry, poll_interval_s=0, grpc_port=port)
    with ready_client(settings), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield stub(channel)


def _garbage_requests(sent: list[Any]) -> int:
    """How many requests only a reference cycle keeps alive on the server (the client's own,
    ``sent``, are alive); the cycles are freed then."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return sum(
            isinstance(o, pb2.ModelInferRequest) and not any(o is s for s in sent)
            for o in gc.garbage
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()


@pytest.mark.parametrize("raw", [False, True])
def test_a_refused_call_s_request_is_freed_at_once(grpc_stub: Any, raw: bool) -> None:
    # seats is an integer feature: a string for it is refused, before and after issue #26
    inputs = [
        ("plan", "BYTES", ["basic"]),
        ("country", "BYTES", ["de"]),
        ("seats", "BYTES", ["s" * MB]),
        ("monthly_fee", "FP64", [20.0]),
        ("autopay", "BOOL", [True]),
        ("tenure_months", "FP64", [5.0]),
    ]
    sent = [infer_request(MIXED, inputs, raw) for _ in range(3)]  # alive: the garbage is not these
    _garbage_requests(sent)
    for request in sent:
        with pytest.raises(grpc.RpcError) as refused:
            grpc_stub.ModelInfer(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "feature 'seats' must be an integer" in (refused.value.details() or "")
    found, deadline = 0, time.monotonic() + 1.5
    while time.monotonic() < deadline:  # the server finishes its calls after the client's end
        found += _garbage_requests(sent)
        time.sleep(0.1)
    assert found == 0
