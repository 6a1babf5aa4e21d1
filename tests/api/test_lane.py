"""The predict lane answers as the middleware stack does: same responses, metrics, log lines.

Each request is sent twice in one app, as the same ASGI scope uvicorn would build: once to
the lane (what ``modelserve serve``'s protocol does) and once to the whole app (the stack,
whose ``PredictFastPath`` answers it), and everything a user sees is compared.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app.api.lane import PredictLane
from app.logs import request_id_var
from app.registry.store import Registry
from app.server.protocol import PREDICT_LANE
from tests.helpers.app_factory import HTTP_METRICS

WHOLE = SimpleNamespace(more_body=False)  # the request's body came with its headers

MODEL = "breast-cancer"
NAMES = {m.removesuffix("_total") for m in HTTP_METRICS}
Message = dict[str, Any]


class _Lines(logging.Handler):
    """Access-log lines with the request id they were written under."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = ("method", "path", "status", "model", "version", "instances")
        line = {k: getattr(record, k) for k in fields}
        self.lines.append({**line, "request_id": request_id_var.get()})


@pytest.fixture
def lines() -> Iterator[_Lines]:
    handler = _Lines()
    logger = logging.getLogger("modelserve.access")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def _samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The HTTP metrics' values, timings' sums left out (they differ run to run)."""
    out = {}
    for metric in REGISTRY.collect():
        if metric.name.removesuffix("_total") not in {
            m.removesuffix("_total") for m in HTTP_METRICS
        }:
            continue
        for s in metric.samples:
            if s.name.endswith("_created") or (
                "duration" in s.name and s.name.endswith(("_sum", "_bucket"))
            ):
                continue
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _delta(before: dict[Any, float], after: dict[Any, float]) -> dict[Any, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def _scope(
    client: TestClient, path: str, body: bytes, headers: list[tuple[bytes, bytes]]
) -> dict[str, Any]:
    sized = [(b"content-length", str(len(body)).encode()), *headers]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"), *sized],
        "state": dict(client.app_state),
    }


def _send(
    client: TestClient, app: Any, scope: dict[str, Any], body: bytes, sent: list[Message]
) -> list[Message]:

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    if isinstance(app, PredictLane):  # as the protocol asks it
        app = app.pick(scope, WHOLE)
        assert app is not None

    async def run() -> None:
        await app(scope, receive, send)

    assert client.portal is not None
    client.portal.call(run)
    return sent


def _seen(
    client: TestClient, app: Any, lines: _Lines, path: str, body: bytes, headers: list[Any]
) -> tuple[list[Message], dict[Any, float], list[dict[str, Any]]]:
    before, logged = _samples(), len(lines.lines)
    sent = _send(client, app, _scope(client, path, body, headers), body, [])
    return sent, _delta(before, _samples()), lines.lines[logged:]


def _comparable(sent: list[Message]) -> tuple[int, list[Any], Any]:
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    assert start["type"] == "http.response.start"
    headers = [(k, v) for k, v in start["headers"] if k not in (b"x-request-id", b"content-length")]
    parsed: Any = body
    if start["status"] < 300 and (b"content-type", b"application/json") in headers:
        parsed = orjson.loads(body)
        if "prediction_ids" in parsed:  # random: the same count
            assert len(parsed.pop("prediction_ids")) == len(parsed["predictions"])
    return start["status"], sorted(headers), parsed


def _lane(client: TestClient) -> PredictLane:
    lane = client.app_state[PREDICT_LANE]
    assert isinstance(lane, PredictLane)
    return lane


def _row(registry: Registry) -> list[Any]:
    return list(registry.metadata(MODEL, "1").example)


def _bodies(registry: Registry) -> list[tuple[str, str, bytes, list[Any], int]]:
    row = _row(registry)
    one = orjson.dumps({"instances": [row]})
    three = orjson.dumps({"instances": [row, row, row]})
    bad = orjson.dumps({"instances": [[*row[:-1], "x"]]})
    given = [(b"x-request-id", b"client-chosen-id")]
    keyed = [(b"x-routing-key", b"user-7")]
    v2 = f"/v2/models/{MODEL}/infer"
    tensor = {"name": "input-0", "datatype": "FP64", "shape": [1, len(row)]}
    chosen = [{"name": "predict"}, {"name": "predict_proba"}]  # not the random ids
    infer = orjson.dumps({"id": "r-1", "inputs": [{**tensor, "data": row}], "outputs": chosen})
    header = orjson.dumps(
        {
            "id": "r-2",
            "inputs": [{**tensor, "parameters": {"binary_data_size": 8 * len(row)}}],
            "outputs": [{"name": "predict_proba", "parameters": {"binary_data": True}}],
        }
    )
    binary = header + np.asarray([row], dtype=np.float64).tobytes()
    sized = [(b"inference-header-content-length", str(len(header)).encode())]
    no_inputs = orjson.dumps({"inputs": []})
    return [
        ("v2 JSON", v2, infer, given, 200),
        ("v2 pinned version", f"/v2/models/{MODEL}/versions/1/infer", infer, keyed, 200),
        ("v2 binary tensors", v2, binary, sized, 200),
        ("v2 invalid JSON", v2, b"{", [], 400),
        ("v2 no inputs", v2, no_inputs, [], 400),
        ("v2 unknown model", "/v2/models/nope/infer", infer, [], 404),
        ("v2 unknown version", f"/v2/models/{MODEL}/versions/9/infer", infer, [], 404),
        ("default model", "/predict", one, given, 200),
        ("v1, three rows", f"/v1/models/{MODEL}:predict", three, keyed, 200),
        ("invalid JSON", "/predict", b"{", [], 400),
        ("invalid value", "/predict", bad, given, 422),
        ("unknown model", "/v1/models/nope:predict", one, [], 404),
        ("empty instances", "/predict", b'{"instances": []}', [], 422),
    ]


@pytest.mark.parametrize("direct", [True, False], ids=["series written directly", "via Info"])
def test_the_lane_answers_counts_and_logs_as_the_stack_does(
    make_client: Callable[..., TestClient],
    lines: _Lines,
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
    direct: bool,
) -> None:
    client = make_client()
    lane = _lane(client)
    assert lane._metrics.series is not None  # the default instrumentation, written directly
    if not direct:  # as with any other instrumentation: its own functions, given an Info
        monkeypatch.setattr(lane._metrics, "series", None)
    for case, path, body, headers, status in _bodies(registry):
        got = _seen(client, lane, lines, path, body, headers)
        want = _seen(client, client.app, lines, path, body, headers)
        assert _comparable(got[0]) == _comparable(want[0]), case
        assert got[0][0]["status"] == status, case
        assert got[1] == want[1] and got[1], case  # the same series moved by the same amounts
        assert len(got[2]) == len(want[2]) == 1, case
        line, expected = got[2][0], want[2][0]
        assert line.pop("request_id") == dict(got[0][0]["headers"])[b"x-request-id"].decode()
        expected.pop("request_id")
        assert line == expected, case
        if headers and headers[0][0] == b"x-request-id":
            assert dict(got[0][0]["headers"])[b"x-request-id"] == headers[0][1], case
        assert request_id_var.get() == "-"  # reset after the request


def test_a_body_over_the_limit_is_refused_by_both_alike(
    make_client: Callable[..., TestClient], lines: _Lines
) -> None:
    client = make_client(max_body_bytes=1024)
    body = orjson.dumps({"instances": [[0.5] * 30] * 20})
    got = _seen(client, _lane(client), lines, "/predict", body, [])
    want = _seen(client, client.app, lines, "/predict", body, [])
    assert _comparable(got[0]) == _comparable(want[0])
    assert got[0][0]["status"] == 413
    assert got[1] == want[1]


@pytest.mark.parametrize(
    ("failure", "answer"),
    [(RuntimeError("a bug"), b"Internal Server Error"), (asyncio.CancelledError(), None)],
    ids=["an unexpected error: a plain 500 sent", "cancelled: nothing sent"],
)
def test_a_failed_request_is_counted_and_logged_as_500_and_raised_as_the_stack_does(
    make_client: Callable[..., TestClient],
    lines: _Lines,
    monkeypatch: pytest.MonkeyPatch,
    registry: Registry,
    failure: BaseException,
    answer: bytes | None,
) -> None:
    client = make_client()
    body = orjson.dumps({"instances": [_row(registry)]})
    services = client.app.state.services  # type: ignore[attr-defined]

    async def failing(*_: Any, **__: Any) -> None:
        raise failure

    monkeypatch.setattr(services.inference, "predict", failing)
    seen = []
    for app in (_lane(client), client.app):
        sent: list[Message] = []
        before, logged = _samples(), len(lines.lines)
        with pytest.raises(BaseException) as raised:
            _send(client, app, _scope(client, "/predict", body, []), body, sent)
        assert type(raised.value).__name__.endswith(type(failure).__name__)
        seen.append((sent, _delta(before, _samples()), lines.lines[logged:]))
    (lane_sent, lane_metrics, lane_lines), (stack_sent, stack_metrics, stack_lines) = seen
    if answer is None:
        assert lane_sent == stack_sent == []
    else:
        assert lane_sent[0]["status"] == stack_sent[0]["status"] == 500
        assert lane_sent[1]["body"] == stack_sent[1]["body"] == answer
    assert lane_metrics == stack_metrics and lane_metrics  # in progress back to 0, a 500 counted
    assert [line["status"] for line in lane_lines] == [line["status"] for line in stack_lines]
    assert [line["status"] for line in lane_lines] == [500]
    assert request_id_var.get() == "-"


@pytest.mark.parametrize(
    ("method", "path", "taken"),
    [
        ("POST", "/predict", True),
        ("POST", f"/v1/models/{MODEL}:predict", True),
        ("POST", "/v1/models/any-name:predict", True),
        ("GET", "/predict", False),
        ("POST", "/predict/", False),
        ("POST", f"/v1/models/{MODEL}:explain", False),
        ("POST", f"/v2/models/{MODEL}/infer", True),
        ("POST", f"/v2/models/{MODEL}/versions/3/infer", True),
        ("GET", f"/v2/models/{MODEL}/infer", False),
        ("POST", f"/v2/models/{MODEL}", False),
        ("POST", "/v2/models//infer", False),
        ("POST", "/v2/models/a/b/infer", False),
        ("POST", f"/v2/models/{MODEL}/versions//infer", False),
        ("POST", f"/v2/models/{MODEL}/versions/1/2/infer", False),
        ("POST", "/v1/models/a/b:predict", False),
        ("OPTIONS", "/predict", False),
    ],
)
def test_the_lane_takes_the_predict_routes_only(
    make_client: Callable[..., TestClient], method: str, path: str, taken: bool
) -> None:
    lane = _lane(make_client())
    scope = {"type": "http", "method": method, "path": path, "headers": []}
    assert (lane.pick(scope, WHOLE) is not None) is taken


def test_a_cross_origin_request_goes_through_cors(make_client: Callable[..., TestClient]) -> None:
    lane = _lane(make_client(cors_origins=["https://app.example"]))
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/predict", "headers": []}
    assert lane.pick(scope, WHOLE) is not None
    scope["headers"] = [(b"origin", b"https://app.example")]
    assert lane.pick(scope, WHOLE) is None
    plain = _lane(make_client())  # no CORS configured: nothing to add, the lane takes it
    assert plain.pick(scope, WHOLE) is not None


def test_a_body_still_arriving_is_read_under_the_deadline(
    make_client: Callable[..., TestClient],
) -> None:
    """A body that had not all come with the headers is waited for at most
    ``MODELSERVE_BODY_TIMEOUT_S``, then refused 408 (a whole body needs no deadline)."""
    client = make_client(body_timeout_s=0.3)
    body = orjson.dumps({"instances": [[1.0, 2.0, 3.0, 4.0]]})
    scope = _scope(client, "/predict", body, [])
    answer: Any = _lane(client).pick(scope, SimpleNamespace(more_body=True))
    assert answer is not None
    sent: list[Message] = []

    async def receive() -> Message:
        await asyncio.sleep(3600)  # the rest of the body never comes
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    async def run() -> None:
        await answer(scope, receive, send)

    assert client.portal is not None
    client.portal.call(run)
    assert sent[0]["status"] == 408
    assert orjson.loads(sent[1]["body"])["error"]["type"] == "body_timeout"
