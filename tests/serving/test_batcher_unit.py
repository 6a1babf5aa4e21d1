"""MicroBatcher on its own: coalescing, slicing, failure isolation, no wait when idle, QueueFull."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from app.serving.batching import BatchResult, MicroBatcher, QueueFullError
from app.serving.contract import Rows


class Model:
    """Doubles its input; refuses any call containing a negative value; can be held."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, rows: Rows) -> BatchResult:
        assert isinstance(rows, np.ndarray)
        self.gate.wait(30)
        self.calls.append(len(rows))
        if (rows < 0).any():
            raise ValueError("negative")
        return BatchResult(rows[:, 0] * 2, np.column_stack([rows[:, 0], -rows[:, 0]]))


async def _until_taken(batcher: MicroBatcher) -> None:
    """Poll until the consumer has taken everything queued into a (held) model call."""
    while batcher.depth or not batcher.busy:
        await asyncio.sleep(0.005)


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


def _batcher(model: Model, pool: ThreadPoolExecutor, **kw: Any) -> MicroBatcher:
    settings: dict[str, Any] = {"max_rows": 256, "max_wait_s": 0.002, "max_queue": 64, **kw}
    return MicroBatcher(model, pool, **settings)


@pytest.fixture
def pool() -> Any:
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


def test_lone_request_is_scored_at_once_even_with_a_long_max_wait(pool: ThreadPoolExecutor) -> None:
    model = Model()

    async def main() -> None:
        batcher = _batcher(model, pool, max_wait_s=30.0)
        for value in (1.0, 2.0, 3.0):  # each after the previous call: still alone, no wait
            result = await asyncio.wait_for(batcher.submit(np.array([[value]])), 5)
            assert result.predictions.tolist() == [value * 2]
        await batcher.close()

    _run(main())
    assert model.calls == [1, 1, 1]


def test_concurrent_requests_share_a_call_and_get_their_own_rows(pool: ThreadPoolExecutor) -> None:
    model = Model()

    async def main() -> list[BatchResult]:
        batcher = _batcher(model, pool)
        model.gate.clear()  # hold the first call so the rest queue up behind it
        first = asyncio.ensure_future(batcher.submit(np.array([[0.5]])))
        await _until_taken(batcher)
        rest = [
            asyncio.ensure_future(batcher.submit(np.arange(i, i + n, dtype=float)[:, None]))
            for i, n in ((1, 1), (10, 3), (20, 2))
        ]
        model.gate.set()
        results = await asyncio.gather(first, *rest)
        await batcher.close()
        return results

    results = _run(main())
    assert [r.predictions.tolist() for r in results] == [[1.0], [2.0], [20, 22, 24], [40, 42]]
    assert results[2].probabilities is not None
    assert results[2].probabilities.tolist() == [[10, -10], [11, -11], [12, -12]]
    assert model.calls == [1, 6]


def test_a_failing_request_fails_alone(pool: ThreadPoolExecutor) -> None:
    model = Model()

    async def main() -> list[Any]:
        batcher = _batcher(model, pool)
        model.gate.clear()
        first = asyncio.ensure_future(batcher.submit(np.array([[1.0]])))
        await _until_taken(batcher)
        rest = [asyncio.ensure_future(batcher.submit(np.array([[v]]))) for v in (2.0, -1.0, 3.0)]
        model.gate.set()
        out = await asyncio.gather(first, *rest, return_exceptions=True)
        await batcher.close()
        return out

    first, two, bad, three = _run(main())
    assert isinstance(bad, ValueError)
    assert [r.predictions.tolist() for r in (first, two, three)] == [[2.0], [4.0], [6.0]]
    assert model.calls[:2] == [1, 3]  # the merged call failed, then one by one
    assert sorted(model.calls[2:]) == [1, 1, 1]


def test_full_queue_raises_at_once(pool: ThreadPoolExecutor) -> None:
    model = Model()

    async def main() -> None:
        batcher = _batcher(model, pool, max_queue=2, max_rows=1)
        model.gate.clear()
        running = asyncio.ensure_future(batcher.submit(np.array([[1.0]])))
        await _until_taken(batcher)  # the queue is empty again
        queued = [asyncio.ensure_future(batcher.submit(np.array([[v]]))) for v in (2.0, 3.0)]
        await asyncio.sleep(0)
        assert batcher.depth == 2
        with pytest.raises(QueueFullError):
            await batcher.submit(np.array([[4.0]]))
        model.gate.set()
        results = await asyncio.gather(running, *queued)
        assert [r.predictions.tolist() for r in results] == [[2.0], [4.0], [6.0]]
        await batcher.close()

    _run(main())
