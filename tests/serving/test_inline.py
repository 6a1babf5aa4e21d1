"""Fast compiled calls run on the event loop; slow, big or unknown ones in the inference thread."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.config import Settings
from app.registry.store import Registry
from app.serving.batching import BatchResult, MicroBatcher
from app.serving.contract import Rows
from app.serving.inline import TIME_EVERY, InlineCalls
from app.serving.runner import ServedModel
from tests.helpers.toy_models import TOY, toy_registry


class Model:
    """Doubles its input, records the thread of each call; ``delay_s`` of CPU per call (the
    estimate counts CPU time, not sleep)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.threads: list[str] = []

    def __call__(self, rows: Rows) -> BatchResult:
        assert isinstance(rows, np.ndarray)
        self.threads.append(threading.current_thread().name)
        deadline = time.thread_time() + self.delay_s
        while time.thread_time() < deadline:
            pass
        return BatchResult(rows[:, 0] * 2)


def _submit_each(model: Model, inline: InlineCalls | None, rows: list[int]) -> list[str]:
    """Each request alone, one after the other; the thread each call ran in (by name)."""

    async def main() -> None:
        with ThreadPoolExecutor(1, thread_name_prefix="inference") as pool:
            batcher = MicroBatcher(model, pool, max_rows=256, max_wait_s=0.0, max_queue=64)
            batcher.inline = inline
            for n in rows:
                result = await batcher.submit(np.full((n, 1), 1.5))
                assert result.predictions.tolist() == [3.0] * n
            await batcher.close()

    asyncio.run(main())
    return ["loop" if name == "MainThread" else "thread" for name in model.threads]


def test_the_estimate_is_per_row_and_follows_recent_calls() -> None:
    inline = InlineCalls(max_s=0.001)
    assert not inline.allows(1)  # nothing timed yet
    inline.took(0.000_010, 1)
    assert inline.allows(1) and inline.allows(99) and not inline.allows(100)
    inline.took(0.004, 1)  # one slow call: the estimate moves, by a fifth of the difference
    assert inline.allows(1) and not inline.allows(2)
    for _ in range(20):
        inline.took(0.002, 1)
    assert not inline.allows(1)


def test_a_fast_model_is_called_on_the_loop_after_its_first_call() -> None:
    threads = _submit_each(Model(), InlineCalls(0.001), [1, 1, 1, 5])
    assert threads == ["thread", "loop", "loop", "loop"]


def test_without_inline_every_call_is_in_the_inference_thread() -> None:
    assert _submit_each(Model(), None, [1, 1, 1]) == ["thread"] * 3


def test_a_slow_model_stays_in_the_thread() -> None:
    assert _submit_each(Model(delay_s=0.002), InlineCalls(0.001), [1, 1, 1]) == ["thread"] * 3


def test_a_model_that_turns_slow_on_the_loop_goes_back_to_the_thread() -> None:
    """Calls on the loop are timed one in ``TIME_EVERY``: a model that turns slow there is
    still seen, within a few timed calls, and sent back to the thread."""
    model = Model()
    threads = _submit_each(model, InlineCalls(0.001), [1] * 3)
    assert threads == ["thread", "loop", "loop"]
    model.delay_s = 0.003
    model.threads.clear()
    inline = InlineCalls(0.001)
    inline.took(0.000_010, 1)
    threads = _submit_each(model, inline, [1] * (6 * TIME_EVERY))
    assert threads[0] == "loop"
    assert "thread" in threads and threads.index("thread") <= 5 * TIME_EVERY
    assert set(threads[threads.index("thread") :]) == {"thread"}


def test_a_batch_too_big_for_the_estimate_goes_to_the_thread() -> None:
    model = Model(delay_s=0.0002)  # 0.2 ms a call: one row is under 1 ms, ten are not
    assert _submit_each(model, InlineCalls(0.001), [1, 1, 10, 1]) == [
        "thread",
        "loop",
        "thread",
        "loop",
    ]


def test_an_inline_call_that_raises_fails_its_request_only() -> None:
    class Refusing(Model):
        def __call__(self, rows: Rows) -> BatchResult:
            assert isinstance(rows, np.ndarray)
            if (rows < 0).any():
                raise ValueError("negative")
            return super().__call__(rows)

    async def main() -> None:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(Refusing(), pool, max_rows=256, max_wait_s=0.0, max_queue=64)
            batcher.inline = InlineCalls(0.001)
            await batcher.submit(np.ones((1, 1)))
            with pytest.raises(ValueError, match="negative"):
                await batcher.submit(-np.ones((1, 1)))
            assert (await batcher.submit(np.ones((1, 1)))).predictions.tolist() == [2.0]
            await batcher.close()

    asyncio.run(main())


def test_compiled_scorers_may_run_inline_and_scikit_learn_may_not(
    registry: Registry, tmp_path: Path
) -> None:
    def served(registry: Registry, name: str, **settings: Any) -> ServedModel:
        config = Settings(registry=registry.root, poll_interval_s=0, **settings)
        return ServedModel.load(registry, name, "1", config, pool)

    with ThreadPoolExecutor(1) as pool:
        linear = served(registry, "breast-cancer")
        assert linear.scorer == "one-pass-linear" and linear.inline
        assert not served(registry, "breast-cancer", inline_max_ms=0).inline
        toy = served(toy_registry(tmp_path / "toy", delay_s=0.0), TOY)
        assert toy.scorer == "scikit-learn" and not toy.inline
