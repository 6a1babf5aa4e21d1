"""Scoring rows a second time, off the request path: a shadow behind production, production
behind a canary.

The request path only offers a job (its rows, the answer it got and the prediction ids) to a
bounded queue and never waits: when the queue is full the job is dropped and counted in
``modelserve_shadow_dropped_total``. One consumer task sends whatever has queued, as one hop, to
the off-path scorer process (``app.serving.offpath``), which scores it on a core of its own and
reports back; one hop is in flight at a time, so a scorer that cannot keep up only makes the
queue drop. The report's agreement counts, differences, failures and durations go into this
process's metrics with one increment per series; a shadow's outputs the scorer writes to the
prediction log itself, marked as shadow. Failures (a hop, a version's rows, the shadow rows the
log refused) are counted every time and logged when they start, at most once a minute while they
last, and when they end (``RepeatedFailureLog``): not one line per hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import pickle
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app import metrics
from app.config import Settings
from app.failure_log import RepeatedFailureLog
from app.frames import HEADER, frame, helper_env
from app.serving.batching import BatchResult
from app.serving.contract import Rows, concat
from app.serving.offpath_protocol import Report, ShadowLog, Start, Task, Version
from app.serving.runner import ServedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    scorer: ServedModel  # the version that scores the rows now
    challenger: str  # the non-production version agreement is counted for
    rows: Rows
    answered: BatchResult  # what the request was answered with
    ids: Sequence[str]
    is_shadow: bool  # the scorer is a shadow (logged, its latency timed); else production


class ScorerProcess:
    """The server's end of one off-path scorer process: started on first use, again after
    it dies; ``score`` sends one hop and waits for its report."""

    RESPAWN_AFTER_S = 5.0  # a scorer that keeps dying is not restarted for every hop
    START_TIMEOUT_S = 120.0  # from spawn to its "ready" (imports, on a busy host)
    HOP_TIMEOUT_S = 120.0  # a hop (a version's first load included) taking longer: stuck

    def __init__(self, registry: Path, settings: Settings, log: ShadowLog | None = None) -> None:
        self._start = Start(registry, settings, log)
        self._proc: asyncio.subprocess.Process | None = None
        self._spawned_at = -self.RESPAWN_AFTER_S

    async def score(self, tasks: list[Task]) -> Report:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            if time.monotonic() - self._spawned_at < self.RESPAWN_AFTER_S:
                raise RuntimeError("the off-path scorer exited; restarting it shortly")
            self._spawned_at = time.monotonic()
            proc = self._proc = await self._spawn()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            async with asyncio.timeout(self.HOP_TIMEOUT_S):
                proc.stdin.write(frame(tasks))
                await proc.stdin.drain()
                report = await _receive(proc.stdout)
        except TimeoutError:
            proc.kill()  # a model stuck in a call: a new scorer takes the next hops
            await self.close()
            raise RuntimeError(f"the off-path scorer took over {self.HOP_TIMEOUT_S:g} s") from None
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            await self.close()
            raise RuntimeError(f"the off-path scorer exited: {exc}") from None
        assert isinstance(report, Report)
        return report

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # end of input: the scorer exits
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def _spawn(self) -> asyncio.subprocess.Process:
        env = helper_env()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.serving.offpath",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(frame(self._start))
        try:
            async with asyncio.timeout(self.START_TIMEOUT_S):
                await _receive(proc.stdout)  # its "ready"
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError) as exc:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise RuntimeError(f"the off-path scorer did not start: {exc!r}") from None
        except asyncio.CancelledError:
            # The server stopped while it started: not ours yet to close, so it would outlive
            # us waiting for hops. The child watcher reaps it.
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        log.info("off-path scorer started", extra={"pid": proc.pid})
        return proc


async def _receive(stream: asyncio.StreamReader) -> object:
    """The scorer's next message (``IncompleteReadError`` once it has gone)."""
    (size,) = HEADER.unpack(await stream.readexactly(HEADER.size))
    return pickle.loads(await stream.readexactly(size))  # noqa: S301 (our own child's)


class ShadowQueue:
    def __init__(
        self,
        log: ShadowLog | None,
        registry: Path,
        settings: Settings,
        *,
        max_jobs: int = 1000,
        max_jobs_per_hop: int = 128,
        hop_interval_s: float = 0.02,
    ) -> None:
        self._scorer = ScorerProcess(registry, settings, log)
        self._logged = log is not None
        self._jobs: deque[Job] = deque()
        self._max_jobs = max_jobs
        self._per_hop = max_jobs_per_hop
        # Hops at most this often while the queue is under half full: each hop costs the
        # event loop a pickle, a pipe round trip and a report, so few large ones are cheaper.
        self._interval_s = hop_interval_s
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        logger = logging.getLogger(__name__)  # ``log`` is the shadow log's writer here
        self._hops_failed = RepeatedFailureLog(logger, "off-path scoring failed", unit="jobs")
        self._rows_not_written = RepeatedFailureLog(
            logger, "prediction log: shadow rows not written", unit="rows"
        )
        self._version_failures: dict[Version, RepeatedFailureLog] = {}

    @property
    def depth(self) -> int:
        return len(self._jobs)

    def offer(self, job: Job) -> None:
        """Queue ``job`` for scoring later; never blocks, never raises."""
        if len(self._jobs) >= self._max_jobs:
            metrics.SHADOW_DROPPED.labels(job.scorer.name).inc()
            return
        self._jobs.append(job)
        if self._idle.is_set():
            self._idle.clear()
            self._wake.set()
        if self._task is None or self._task.done():
            # A context of its own: the consumer outlives the request that started it.
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), context=contextvars.Context())

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
        await self._scorer.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._jobs:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            started = loop.time()
            jobs = [self._jobs.popleft() for _ in range(min(self._per_hop, len(self._jobs)))]
            groups = _group(jobs)
            try:
                tasks = [_task(group, self._logged) for group in groups]
                self._settle(tasks, await self._scorer.score(tasks))
            except Exception as exc:  # never let one bad hop stop the consumer
                for job in jobs:
                    metrics.SHADOW_FAILURES.labels(job.scorer.name, job.scorer.version).inc()
                self._hops_failed.failed(exc, count=len(jobs))
            else:
                self._hops_failed.succeeded()
            rest = self._interval_s - (loop.time() - started)
            if rest > 0 and self._jobs and len(self._jobs) < self._max_jobs // 2:
                await asyncio.sleep(rest)

    def _settle(self, tasks: list[Task], report: Report) -> None:
        """Count the hop with one increment per series; log failures as they start and end."""
        for (name, version, outcome), n in report.agree.items():
            if n:
                metrics.AGREEMENT.labels(name, version, outcome).inc(n)
        for (name, version), values in report.differences.items():
            histogram = metrics.AGREEMENT_DIFFERENCE.labels(name, version)
            for value in values:
                histogram.observe(value)
        for (name, version), n in report.failures.items():
            metrics.SHADOW_FAILURES.labels(name, version).inc(n)
            error = report.errors.get((name, version), "?")
            self._version_log(name, version).failed(error, count=n)
        for scorer in {task.scorer for task in tasks} - report.failures.keys():
            if scorer in self._version_failures:
                self._version_failures[scorer].succeeded()
        for (name, version), seconds in report.durations.items():
            histogram = metrics.INFERENCE_DURATION.labels(name, version)
            for value in seconds:
                histogram.observe(value)
        for (name, version, outcome), n in report.judged.items():
            metrics.SHADOW_FEEDBACK.labels(name, version, outcome).inc(n)
        if report.log_failures:
            metrics.LOG_WRITE_FAILURES.labels(metrics.OP_PREDICTIONS).inc(report.log_failures)
            self._rows_not_written.failed(report.log_error, count=report.log_failures)
        elif any(task.ids and report.failures[task.scorer] == 0 for task in tasks):
            self._rows_not_written.succeeded()  # a version's rows were written

    def _version_log(self, name: str, version: str) -> RepeatedFailureLog:
        found = self._version_failures.get((name, version))
        if found is None:
            if len(self._version_failures) >= 64:  # forget the versions that recovered
                self._version_failures = {
                    k: v for k, v in self._version_failures.items() if v.failing
                }
            what = f"{name} version {version} failed off-path"
            found = self._version_failures[(name, version)] = RepeatedFailureLog(
                log, what, unit="requests"
            )
        return found


def _group(jobs: list[Job]) -> list[list[Job]]:
    """The hop's jobs by scoring version and role, in order within each."""
    groups: dict[tuple[int, str, bool], list[Job]] = {}
    for job in jobs:
        groups.setdefault((id(job.scorer), job.challenger, job.is_shadow), []).append(job)
    return list(groups.values())


def _task(jobs: list[Job], logged: bool) -> Task:
    first = jobs[0]
    many = len(jobs) > 1
    ids = [pid for job in jobs for pid in job.ids] if logged and first.is_shadow else []
    answered = [job.answered.predictions for job in jobs]
    return Task(
        (first.scorer.name, first.scorer.version),
        first.challenger,
        concat([job.rows for job in jobs]) if many else first.rows,
        [len(job.rows) for job in jobs],
        np.concatenate(answered) if many else answered[0],
        ids,
        timed=first.is_shadow,
    )
