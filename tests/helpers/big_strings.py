"""Requests that each carry one big client string, on every route that reads one.

Shared by the tests (tests/api/test_big_strings.py, tests/e2e/robustness/test_big_strings.py)
and the memory bench (bench/big_strings.py), which send them with ``Load`` and sample the
server's RSS with ``Sampler``. Each kind puts the string ``big`` where a hostile or buggy
client would: a string feature's value, an unknown feature name, a numeric feature's value, an
OIP v2 BYTES tensor (JSON and binary) or tensor name, an MLflow body (JSON and CSV), a feedback
label or id, a gRPC BYTES tensor. The served model is the churn model (``tests.helpers.mixed``)
as the default model: plan and country are strings, seats an integer, monthly_fee and
tenure_months numbers, autopay a boolean.
"""

from __future__ import annotations

import collections
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson

from tests.helpers.grpc_client import infer_request, stub
from tests.helpers.hostile import rss_bytes
from tests.helpers.mixed import MIXED
from tests.helpers.support import Server, free_port

ROW: dict[str, Any] = {
    "plan": "basic",
    "country": "de",
    "seats": 3,
    "monthly_fee": 20.0,
    "autopay": True,
    "tenure_months": 5.0,
}
COLUMNS = list(ROW)
_DATATYPES = {str: "BYTES", bool: "BOOL", int: "INT64", float: "FP64"}
MB = 1024 * 1024
LIMIT = 8 * 1024  # the largest answer allowed to any of these requests


@dataclass(frozen=True)
class Call:
    """One HTTP request: method POST, ``path``, a body and its headers; ``names`` is what the
    error must name (the field, or the feature, or both: any one of them will do)."""

    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    names: tuple[str, ...] = ()


def _json(path: str, payload: Any, *names: str) -> Call:
    return Call(path, orjson.dumps(payload), {"content-type": "application/json"}, names)


def _tensors(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": k, "datatype": _DATATYPES[type(v)], "shape": [1], "data": [v]}
        for k, v in row.items()
    ]


def _binary_infer(big: str) -> Call:
    """The v2 binary tensor extension: plan's BYTES as raw bytes after the JSON header."""
    raw = big.encode()
    tensors = _tensors(ROW)
    tensors[0] = {
        "name": "plan",
        "datatype": "BYTES",
        "shape": [1],
        "parameters": {"binary_data_size": len(raw) + 4},
    }
    header = orjson.dumps({"inputs": tensors})
    body = header + struct.pack("<I", len(raw)) + raw
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }
    return Call(f"/v2/models/{MIXED}/infer", body, headers, ("plan",))


def _csv(big: str) -> Call:
    values = [big, "de", "3", "20.0", "true", "5"]
    text = ",".join(COLUMNS) + "\n" + ",".join(values) + "\n"
    return Call("/invocations", text.encode(), {"content-type": "text/csv"}, ("plan",))


KINDS: dict[str, Callable[[str, str], Call]] = {
    "string feature": lambda big, _: _json(
        "/predict", {"instances": [{**ROW, "plan": big}]}, "instances[0].plan"
    ),
    "unknown key": lambda big, _: _json(
        "/predict", {"instances": [{**ROW, big: 1}]}, "instances[0]"
    ),
    "numeric feature": lambda big, _: _json(
        "/predict", {"instances": [{**ROW, "seats": big}]}, "instances[0].seats"
    ),
    "v1 positional": lambda big, _: _json(
        f"/v1/models/{MIXED}:predict",
        {"instances": [[big, *list(ROW.values())[1:]]]},
        "instances[0][0]",
    ),
    "v2 JSON BYTES": lambda big, _: _json(
        f"/v2/models/{MIXED}/infer", {"inputs": _tensors({**ROW, "plan": big})}, "plan"
    ),
    "v2 tensor name": lambda big, _: _json(
        f"/v2/models/{MIXED}/infer",
        {"inputs": [*_tensors(ROW), {"name": big, "datatype": "FP64", "shape": [1], "data": [1]}]},
        "inputs[6].name",
    ),
    "v2 binary BYTES": lambda big, _: _binary_infer(big),
    "invocations JSON": lambda big, _: _json(
        "/invocations",
        {"dataframe_split": {"columns": COLUMNS, "data": [[big, *list(ROW.values())[1:]]]}},
        "plan",
    ),
    "invocations CSV": lambda big, _: _csv(big),
    # ``pid``: a logged prediction's id, so that the label itself is judged (and refused)
    "feedback label": lambda big, pid: _json(
        "/feedback", {"prediction_id": pid, "label": big}, "label"
    ),
    "feedback id": lambda big, _: _json(
        "/feedback", {"prediction_id": big, "label": "yes"}, "prediction_id"
    ),
}


def distinct_string(i: int, size: int = MB) -> str:
    """A ``size``-character ASCII string unlike any other ``i``'s (random, then numbered)."""
    head = f"{i:012d}-"
    return head + os.urandom((size - len(head) + 1) // 2).hex()[: size - len(head)]


GRPC_KINDS = ("gRPC typed BYTES", "gRPC raw BYTES")
ALL_KINDS = (*KINDS, *GRPC_KINDS)


def grpc_request(big: str, raw: bool) -> Any:
    """A gRPC ``ModelInferRequest`` with ``big`` as plan's one BYTES value (typed or raw)."""
    inputs = [(k, _DATATYPES[type(v)], [big if k == "plan" else v]) for k, v in ROW.items()]
    return infer_request(MIXED, inputs, raw)


class Outcomes:
    """Statuses per kind, the largest answer, and the answers that were not a 4xx of at most
    ``LIMIT`` bytes naming their field."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: collections.Counter[tuple[str, int | str]] = collections.Counter()
        self.largest = (0, "")
        self.failures: list[str] = []

    def add(self, kind: str, status: int | str, text: str, names: Iterable[str]) -> None:
        size = len(text.encode())
        with self.lock:
            self.statuses[(kind, status)] += 1
            if size > self.largest[0]:
                self.largest = (size, kind)
            small_4xx = isinstance(status, int) and 400 <= status < 500 and size <= LIMIT
            if not (small_4xx and any(n in text for n in names)) and len(self.failures) < 20:
                self.failures.append(f"{kind}: {status}, {size} bytes: {text[:300]}")

    def table(self) -> list[str]:
        by_kind: dict[str, list[str]] = collections.defaultdict(list)
        for (kind, status), n in sorted(self.statuses.items(), key=str):
            by_kind[kind].append(f"{status} x{n}")
        return [f"  {kind:<18} {', '.join(by_kind[kind])}" for kind in ALL_KINDS if kind in by_kind]


class Load:
    """Requests of the given kinds, each with its own big string, from ``clients`` threads."""

    def __init__(self, url: str, grpc_port: int, prediction_id: str, clients: int = 8) -> None:
        self.url, self.grpc_port, self.prediction_id = url, grpc_port, prediction_id
        self.clients = clients
        self._local = threading.local()

    def send(self, kind: str, big: str, outcomes: Outcomes) -> None:
        local = self._local
        if kind in GRPC_KINDS:
            if not hasattr(local, "grpc"):
                options = [("grpc.max_send_message_length", 8 * MB)]
                local.grpc = stub(grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}", options))
            try:
                local.grpc.ModelInfer(grpc_request(big, kind == GRPC_KINDS[1]), timeout=60)
                outcomes.add(kind, 200, "answered", ())
            except grpc.RpcError as exc:
                code = exc.code()
                status = 400 if code == grpc.StatusCode.INVALID_ARGUMENT else code.name
                outcomes.add(kind, status, exc.details() or "", ("plan",))
            return
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=self.url, timeout=60)
        call = KINDS[kind](big, self.prediction_id)
        try:
            answer = local.http.post(call.path, content=call.body, headers=call.headers)
        except httpx.HTTPError as exc:
            outcomes.add(kind, type(exc).__name__, repr(exc), ())
            return
        outcomes.add(kind, answer.status_code, answer.text, call.names)

    def run(self, requests: int, kinds: Iterable[str] = ALL_KINDS, size: int = MB) -> Outcomes:
        """``requests`` requests cycling through ``kinds``, the i-th with ``distinct_string(i)``."""
        order, outcomes = list(kinds), Outcomes()

        def one(i: int) -> None:
            self.send(order[i % len(order)], distinct_string(i, size), outcomes)

        with ThreadPoolExecutor(self.clients) as pool:
            list(pool.map(one, range(requests)))
        return outcomes


class Sampler(threading.Thread):
    """Each process's peak RSS while it runs (read from /proc every 20 ms)."""

    def __init__(self, pids: Iterable[int]) -> None:
        super().__init__(daemon=True)
        self.pids = sorted(pids)
        self.before = {pid: rss_bytes(pid) for pid in self.pids}
        self.peak = dict(self.before)
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], rss_bytes(pid))
            time.sleep(0.02)

    def stop(self) -> dict[int, float]:
        """Each process's peak growth in MB."""
        self._done.set()
        self.join()
        return {pid: (self.peak[pid] - self.before[pid]) / MB for pid in self.pids}


def mixed_server(registry: Path, work: Path, workers: int, **env: str) -> tuple[Server, int]:
    """``modelserve serve`` of the churn model, not started, and its free gRPC port."""
    grpc_port = free_port()
    settings = {
        "MODELSERVE_MODEL": MIXED,
        "MODELSERVE_WORKERS": str(workers),
        "MODELSERVE_GRPC_PORT": str(grpc_port),
        "MODELSERVE_POLL_INTERVAL_S": "0",
        "MODELSERVE_PREDICTION_LOG": str(work / f"predictions-{workers}.db"),
        **env,
    }
    return Server(registry, workdir=work, env=settings), grpc_port
