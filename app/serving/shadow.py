"""Scoring rows a second time, off the request path: a shadow behind production, production
behind a canary.

The request path only offers a job (its rows, the answer it got and the prediction ids) to a
bounded queue and never waits: when the queue is full the job is dropped and counted in
``modelserve_shadow_dropped_total``. One consumer task takes whatever has queued, scores each
job alone (one model call per job, so a shadow's output is what the model gives those rows
in-process) in one hop of its own thread, then counts agreement with the answer that was sent
and hands a shadow's outputs to the prediction log, marked as shadow. Its own thread, not the
inference thread: production's calls never queue behind a slow shadow, a shadow that cannot
keep up only drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from app import metrics
from app.serving.batching import BatchResult
from app.serving.contract import Rows
from app.serving.runner import ServedModel

log = logging.getLogger(__name__)

# Where a shadow's outputs go (the prediction log's ``submit_shadow``): model, version,
# predictions, probabilities, the ids of the production predictions they shadow.
ShadowSink = Callable[[str, str, npt.NDArray[Any], npt.NDArray[Any] | None, Sequence[str]], None]


@dataclass(frozen=True)
class Job:
    scorer: ServedModel  # the version that scores the rows now
    compared: str  # the non-production version agreement is counted for
    rows: Rows
    answered: BatchResult  # what the request was answered with
    ids: Sequence[str]
    is_shadow: bool  # the scorer is a shadow (logged, its latency timed); else production


class ShadowQueue:
    def __init__(
        self, sink: ShadowSink | None, *, max_jobs: int = 1000, max_jobs_per_hop: int = 64
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self._sink = sink
        self._queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=max_jobs)
        self._per_hop = max_jobs_per_hop
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def offer(self, job: Job) -> None:
        """Queue ``job`` for scoring later; never blocks, never raises."""
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            metrics.SHADOW_DROPPED.labels(job.scorer.name).inc()
            return
        self._idle.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued job is scored; False on timeout."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
                return True
        return False

    async def close(self) -> None:
        await self.drain(5.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            while len(jobs) < self._per_hop and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            try:
                outcomes = await loop.run_in_executor(self._executor, _score_all, jobs)
                self._settle(jobs, outcomes)
            except Exception:  # never let one bad hop stop the consumer
                log.exception("shadow scoring failed")
            if self._queue.empty():
                self._idle.set()

    def _settle(self, jobs: list[Job], outcomes: list[BatchResult | Exception]) -> None:
        """Count the hop's agreement with one increment per series; log shadows' outputs."""
        agree: Counter[tuple[str, str, str]] = Counter()
        for job, outcome in zip(jobs, outcomes, strict=True):
            name = job.scorer.name
            if isinstance(outcome, Exception):
                metrics.SHADOW_FAILURES.labels(name, job.scorer.version).inc()
                log.warning("%s version %s failed off-path: %s", name, job.scorer.version, outcome)
                continue
            count_agreement(
                name, job.compared, job.answered.predictions, outcome.predictions, job, agree
            )
            if job.is_shadow and self._sink is not None:
                self._sink(name, job.compared, outcome.predictions, outcome.probabilities, job.ids)
        for (name, version, outcome_label), n in agree.items():
            metrics.AGREEMENT.labels(name, version, outcome_label).inc(n)


def _score_all(jobs: list[Job]) -> list[BatchResult | Exception]:
    """In the shadow thread: every job its own model call."""
    outcomes: list[BatchResult | Exception] = []
    for job in jobs:
        try:
            outcomes.append(job.scorer.score_off_path(job.rows, timed=job.is_shadow))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def count_agreement(
    name: str,
    version: str,
    answered: npt.NDArray[Any],
    other: npt.NDArray[Any],
    job: Job,
    agree: Counter[tuple[str, str, str]],
) -> None:
    """Classifiers: rows whose predictions agree (every output) into ``agree``; regressors:
    the absolute differences into their histogram."""
    if len(answered) != len(other):
        metrics.SHADOW_FAILURES.labels(name, job.scorer.version).inc()
        return
    if job.scorer.is_classifier:
        if len(answered) == 1 and answered.ndim == 1:  # the common one-row request, cheaply
            same = int(answered.tolist() == other.tolist())
        else:
            same = int(same_rows(answered, other).sum())
        if same:
            agree[(name, version, "agree")] += same
        if same < len(answered):
            agree[(name, version, "disagree")] += len(answered) - same
        return
    histogram = metrics.AGREEMENT_DIFFERENCE.labels(name, version)
    diff = np.abs(np.asarray(answered, dtype=float) - np.asarray(other, dtype=float))
    for value in diff.ravel().tolist():
        histogram.observe(value)


def same_rows(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Per row, whether every output of ``a`` equals ``b``'s (labels of any type)."""
    equal: npt.NDArray[Any] = np.asarray(a == b)
    if equal.shape != a.shape:  # numpy could not compare elementwise (mixed label types)
        equal = np.array([x == y for x, y in zip(a.tolist(), b.tolist(), strict=True)])
    return np.asarray(equal.astype(bool).reshape(len(a), -1).all(axis=1), dtype=np.bool_)
