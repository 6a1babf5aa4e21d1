"""Adaptive micro-batching: coalesce concurrent requests into one model call.

One consumer task per served model takes requests off a bounded queue. When the server is
idle the first request is scored at once, alone. While a model call runs in the inference
thread, new requests pile up in the queue; the next call takes all of them (up to
``max_rows``). So batches grow with load and no request waits for a timer on an idle server.
``max_wait_s`` only applies to a batch forming right behind a call, when load is already
present: it gives requests that are arriving a moment to join.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from app.serving.contract import Rows, concat
from app.serving.inline import InlineCalls

log = logging.getLogger(__name__)


class QueueFullError(Exception):
    """The model's queue is full: the caller should answer 503 with Retry-After."""


@dataclass(frozen=True)
class BatchResult:
    predictions: npt.NDArray[np.generic]
    probabilities: npt.NDArray[np.float64] | None = None

    def slice(self, start: int, stop: int) -> BatchResult:
        proba = None if self.probabilities is None else self.probabilities[start:stop]
        return BatchResult(self.predictions[start:stop], proba)


@dataclass
class _Pending:
    rows: Rows
    future: asyncio.Future[BatchResult] = field(repr=False)


PredictFn = Callable[[Rows], BatchResult]
# Scores requests one model call each, in one thread hop; an exception per failed request.
PredictEachFn = Callable[[list[Rows]], list[BatchResult | Exception]]


class MicroBatcher:
    def __init__(
        self,
        predict: PredictFn,
        executor: Executor,
        *,
        max_rows: int,
        max_wait_s: float,
        max_queue: int,
        on_depth: Callable[[int], None] | None = None,
        merge: bool = True,
        predict_each: PredictEachFn | None = None,
    ) -> None:
        self._predict = predict
        self._predict_each = predict_each or (lambda requests: _each(predict, requests))
        # False: requests still queue and share a thread hop, but each is its own model call.
        self.merge = merge
        self._executor = executor
        self._max_rows = max_rows
        self._max_wait_s = max_wait_s
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=max_queue)
        self._on_depth = on_depth or (lambda _depth: None)
        self._consumer: asyncio.Task[None] | None = None
        self._in_flight = 0
        # Set once the version's scorer is settled, when it is one whose calls may run on the
        # event loop (app.serving.inline); None: every call in the inference thread.
        self.inline: InlineCalls | None = None

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def busy(self) -> bool:
        return self._in_flight > 0 or not self._queue.empty()

    async def submit(self, rows: Rows) -> BatchResult:
        """Score ``rows`` (one request) as part of whatever batch is forming."""
        return await self.enqueue(rows)

    def enqueue(self, rows: Rows) -> asyncio.Future[BatchResult]:
        """Queue ``rows`` (one request) for whatever batch is forming: the future of its result
        (cancel it, or fail it, to give up: the batch leaves it out)."""
        loop = asyncio.get_running_loop()
        if self._consumer is None:
            self._consumer = loop.create_task(self._run())
        future: asyncio.Future[BatchResult] = loop.create_future()
        try:
            self._queue.put_nowait(_Pending(rows, future))
        except asyncio.QueueFull:
            raise QueueFullError from None
        self._on_depth(self._queue.qsize())
        return future

    async def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop the consumer."""
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        # Detach before awaiting: a request submitted meanwhile starts a fresh consumer instead
        # of queueing behind a cancelled one (it would hang until its 504).
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer

    async def _run(self) -> None:
        after_call = False
        while True:
            batch = [await self._queue.get()]
            # A batch being formed is off the queue but not yet scoring: count it as busy, or a
            # hot swap's close() could cancel this task while it holds requests (504 for them).
            self._in_flight += 1
            try:
                rows = len(batch[0].rows)
                rows = self._drain_into(batch, rows)
                if after_call and self.merge and rows < self._max_rows and self._max_wait_s > 0:
                    rows = await self._wait_for_more(batch, rows)
                self._on_depth(self._queue.qsize())
                live = [p for p in batch if not p.future.done()]  # timed-out callers are gone
                if live:
                    await self._score(live)
            finally:
                self._in_flight -= 1
            after_call = not self._queue.empty()

    def _drain_into(self, batch: list[_Pending], rows: int) -> int:
        while rows < self._max_rows and not self._queue.empty():
            pending = self._queue.get_nowait()
            batch.append(pending)
            rows += len(pending.rows)
        return rows

    async def _wait_for_more(self, batch: list[_Pending], rows: int) -> int:
        deadline = time.monotonic() + self._max_wait_s
        while rows < self._max_rows:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                pending = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                break
            batch.append(pending)
            rows = self._drain_into(batch, rows + len(pending.rows))
        return rows

    async def _score(self, batch: list[_Pending]) -> None:
        if not self.merge and len(batch) > 1:
            await self._score_each(batch)
            return
        self._in_flight += 1
        try:
            merged = batch[0].rows if len(batch) == 1 else concat([p.rows for p in batch])
            try:
                result = await self._call(self._predict, merged, len(merged))
            except Exception as exc:
                if len(batch) == 1:
                    _resolve(batch[0], error=exc)
                    return
                # One bad request must not fail its batch-mates: score each alone.
                log.warning("batch of %d failed (%s); scoring requests one by one", len(batch), exc)
                for pending in batch:
                    try:
                        alone = await self._call(self._predict, pending.rows, len(pending.rows))
                        _resolve(pending, result=alone)
                    except Exception as single_exc:
                        _resolve(pending, error=single_exc)
                return
            start = 0
            for pending in batch:
                stop = start + len(pending.rows)
                _resolve(pending, result=result.slice(start, stop))
                start = stop
        finally:
            self._in_flight -= 1

    async def _call(self, fn: Callable[[T], R], arg: T, rows: int) -> R:
        """``fn(arg)`` on the event loop if ``inline`` allows it, else in the inference thread."""
        inline = self.inline
        if inline is None:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, arg)
        if inline.allows(rows):
            return _timed(inline, fn, arg, rows) if inline.times() else fn(arg)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, _timed, inline, fn, arg, rows
        )

    async def _score_each(self, batch: list[_Pending]) -> None:
        self._in_flight += 1
        try:
            requests = [p.rows for p in batch]
            rows = sum(len(r) for r in requests)
            outcomes = await self._call(self._predict_each, requests, rows)
            for pending, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    _resolve(pending, error=outcome)
                else:
                    _resolve(pending, result=outcome)
        finally:
            self._in_flight -= 1


T = TypeVar("T")
R = TypeVar("R")


def _timed(inline: InlineCalls, fn: Callable[[T], R], arg: T, rows: int) -> R:
    # The calling thread's CPU time: in the inference thread, waiting for the GIL is not the
    # call's cost (wall time there would keep a busy model's estimate high, so in the thread).
    start = time.thread_time()
    try:
        return fn(arg)
    finally:
        inline.took(time.thread_time() - start, rows)


def _each(predict: PredictFn, requests: list[Rows]) -> list[BatchResult | Exception]:
    outcomes: list[BatchResult | Exception] = []
    for rows in requests:
        try:
            outcomes.append(predict(rows))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def _resolve(
    pending: _Pending, *, result: BatchResult | None = None, error: Exception | None = None
) -> None:
    if pending.future.done():
        return
    if error is not None:
        pending.future.set_exception(error)
    elif result is not None:
        pending.future.set_result(result)
