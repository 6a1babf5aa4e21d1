"""Backpressure: a full queue answers 503 + Retry-After at once; a slow model answers 504."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.marks import LOAD_SENSITIVE
from tests.helpers.promtext import total
from tests.helpers.support import Server
from tests.helpers.toy_models import SLOW, TOY, iris, toy_env, toy_registry

pytestmark = LOAD_SENSITIVE  # what it checks is the order and timing of answers
QUEUE_SIZE = 2
BURST = 12


def _row() -> list[float]:
    """A row the toy model is slow on (``only_first_value=SLOW``): it loads at full speed."""
    X, _, _ = iris()
    return [SLOW, *(float(v) for v in X[0][1:])]


async def _burst(url: str, n: int) -> list[tuple[int, float, httpx.Response]]:
    """``n`` concurrent predicts; (completion order, seconds, response) for each."""
    done = 0
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one() -> tuple[int, float, httpx.Response]:
            nonlocal done
            start = time.monotonic()
            response = await client.post("/predict", json={"instances": [_row()]})
            done += 1
            return done, time.monotonic() - start, response

        return await asyncio.gather(*(one() for _ in range(n)))


def _watch_depth(server: Server, stop: asyncio.Event) -> Any:
    async def watch() -> float:
        deepest = 0.0
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            while not stop.is_set():
                text = (await client.get("/metrics")).text
                deepest = max(deepest, total(text, "modelserve_queue_depth", {"model": TOY}))
                await asyncio.sleep(0.05)
        return deepest

    return watch()


@pytest.mark.e2e
def test_full_queue_answers_503_with_retry_after_then_recovers(
    tmp_path: Path, server_factory: Any
) -> None:
    # One row per model call, 1.5 s each, two may wait: of a burst of 12, one runs, two wait
    # and nine must be refused at once.
    registry = toy_registry(tmp_path / "models", delay_s=1.5, only_first_value=SLOW)
    env = toy_env(queue_size=str(QUEUE_SIZE), batch_max_rows="1")
    server = server_factory(registry.root, env=env)
    server.wait_ready()

    async def scenario() -> tuple[list[tuple[int, float, httpx.Response]], float]:
        stop = asyncio.Event()
        watcher = asyncio.ensure_future(_watch_depth(server, stop))
        results = await _burst(server.url, BURST)
        stop.set()
        return results, await watcher

    results, deepest = asyncio.run(scenario())

    ok = [r for r in results if r[2].status_code == 200]
    refused = [r for r in results if r[2].status_code == 503]
    assert len(ok) + len(refused) == BURST, [r[2].text for r in results]
    assert 1 <= len(ok) <= 1 + QUEUE_SIZE + 1  # a slot may free up while the burst arrives
    assert len(refused) >= BURST - QUEUE_SIZE - 2
    for _, _, response in refused:
        assert response.headers["retry-after"].isdigit()
        error = response.json()["error"]
        assert error["type"] == "overloaded"
        assert error["status"] == 503
    # Refusals do not wait for the model: every 503 arrived before the first 200.
    assert max(order for order, _, _ in refused) < min(order for order, _, _ in ok)
    assert deepest >= 1

    text = httpx.get(server.url + "/metrics", timeout=10).text
    assert total(text, "modelserve_requests_rejected_total", {"model": TOY}) == len(refused)
    assert total(
        text,
        "modelserve_prediction_errors_total",
        {"model": TOY, "reason": "overloaded"},
    ) == len(refused)
    assert total(text, "modelserve_queue_depth", {"model": TOY}) == 0

    # Load gone: normal service again.
    again = asyncio.run(_burst(server.url, 2))
    assert [r[2].status_code for r in again] == [200, 200]


@pytest.mark.e2e
def test_slow_prediction_answers_504_instead_of_hanging(
    tmp_path: Path, server_factory: Any
) -> None:
    registry = toy_registry(tmp_path / "models", delay_s=3.0, only_first_value=SLOW)
    server = server_factory(registry.root, env=toy_env(request_timeout_s="0.5"), args=())
    server.wait_ready(timeout=90)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/predict", json={"instances": [_row()]})
        assert response.status_code == 504, response.text
        error = response.json()["error"]
        assert error["type"] == "timeout"
        text = client.get("/metrics").text
    assert (
        total(text, "modelserve_prediction_errors_total", {"model": TOY, "reason": "timeout"}) == 1
    )
    live = httpx.get(server.url + "/health/live", timeout=10)
    assert live.status_code == 200
