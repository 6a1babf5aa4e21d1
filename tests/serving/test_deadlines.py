"""Request deadlines: late futures fail with TimeoutError, answered ones are let go."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import pytest

from app.serving.deadlines import COMPACT_AT, Deadlines


class Answer:
    """A result whose memory a test can watch."""


def test_a_future_not_done_by_its_deadline_fails_with_timeout_error() -> None:
    async def main() -> tuple[float, str]:
        deadlines = Deadlines(0.2, tick_s=0.02)
        loop = asyncio.get_running_loop()
        late, answered = loop.create_future(), loop.create_future()
        deadlines.watch(late)
        deadlines.watch(answered)
        answered.set_result("in time")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await late
        return time.monotonic() - started, answered.result()

    took, answered = asyncio.run(main())
    assert 0.15 <= took < 1.0  # the deadline, at most a tick (and a busy host) late
    assert answered == "in time"


def test_a_cancelled_request_is_left_alone() -> None:
    async def main() -> bool:
        deadlines = Deadlines(0.05, tick_s=0.01)
        future = asyncio.get_running_loop().create_future()
        deadlines.watch(future)
        future.cancel()
        await asyncio.sleep(0.2)
        return future.cancelled()

    assert asyncio.run(main())


def test_answers_behind_a_slow_request_are_not_held_until_it_ends() -> None:
    """One request stuck at the head (a slow model call) must not keep the results of every
    request answered after it in memory until its own deadline."""

    async def main() -> tuple[int, int]:
        deadlines = Deadlines(60.0, tick_s=0.01)
        loop = asyncio.get_running_loop()
        stuck = loop.create_future()
        deadlines.watch(stuck)
        answers = []
        for _ in range(3 * COMPACT_AT):
            future = loop.create_future()
            deadlines.watch(future)
            answer = Answer()
            answers.append(weakref.ref(answer))
            future.set_result(answer)
            del future, answer
        await asyncio.sleep(0.1)
        gc.collect()
        alive = sum(ref() is not None for ref in answers)
        stuck.cancel()
        deadlines.close()
        return alive, len(answers)

    alive, answered = asyncio.run(main())
    assert alive == 0, f"{alive} of {answered} answers still held"


def test_a_new_event_loop_starts_afresh() -> None:
    """Futures of a loop that has ended are not touched from the next one (a test client or
    the CLI may run one loop after another)."""
    deadlines = Deadlines(0.1, tick_s=0.01)

    async def watch_one() -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        deadlines.watch(future)
        return future

    abandoned = asyncio.run(watch_one())

    async def second() -> None:
        with pytest.raises(TimeoutError):
            await await_it(await watch_one())

    async def await_it(future: asyncio.Future[None]) -> None:
        await future

    asyncio.run(second())
    assert not abandoned.done()
