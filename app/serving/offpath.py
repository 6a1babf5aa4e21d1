"""The off-path scorer: a process of its own that scores shadow and canary-comparison jobs.

``ShadowQueue`` (``app.serving.shadow``) starts ``python -m app.serving.offpath`` when its first
job arrives and speaks to it over stdin and stdout in length-prefixed pickles: a ``Start`` (the
registry and the settings) answered by ``"ready"``, then one hop of ``Task``s in and one
``Report`` out, in turn. Each version asked for is loaded here from the registry, checksum
verified and warmed: the same ``ServedModel`` as the server's, so a merged call is used only
where it is bit for bit exact.

Why a process: in the server, a second model call for every request, however quick, holds the
GIL the event loop needs, and production's latency pays for it (+20 to +40 % p99 at c=16 with a
thread). Here it runs on another core. This process exports no metrics (its environment has no
multiprocess directory): its report carries agreement counts, absolute differences, failures,
call durations, and the outcomes of labels that were stored before the shadow's answers,
back to the server, which counts them in its own metrics. A shadow's outputs it writes to the
prediction log itself (``Start.log``, ``app.monitoring.shadowlog.ShadowWriter``, passed by
name: ``serving`` does not import ``monitoring``), on idle CPU like the rest: written by the
server, or here at normal priority (nice 19), they cost production's p99 about 10% at c=16.
The writer commits at most ``ShadowWriter.ROWS_PER_COMMIT`` rows at a time, so that, starved
of CPU, it holds the log's write lock only for a short statement's worth of its small share.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from app.frames import read_frame, write_frame
from app.logs import configure_logging
from app.registry.store import Registry
from app.results import InferenceResult
from app.serving.batching import BatchResult
from app.serving.contract import Rows, split_rows
from app.serving.offpath_protocol import Report, ShadowRows, Start, Task, Version
from app.serving.runner import ServedModel

log = logging.getLogger(__name__)

MAX_LOADED = 8  # versions kept loaded here, least recently used out first


def score_jobs(
    served: ServedModel, rows: Rows, sizes: list[int]
) -> tuple[list[BatchResult | Exception], list[float]]:
    """Score several requests' ``rows`` (merged; ``sizes`` rows each) outside the batcher
    and the served counters: each request's outcome, and the durations of the model calls.

    Durations are the calling thread's CPU time: this process runs only on idle CPU, so its
    wall time would measure the host's load (a shadow's first calls, preempted by
    production, took 56 ms of wall time for a 0.5 ms model) rather than the model.

    One call for all when this model's merged rows are bit for bit its rows scored alone
    (checked at warm-up, as for the batcher); when that call fails, or the model does not
    merge exactly, one call per request, so only a bad request fails.
    """
    if served.merges or len(sizes) == 1:
        start = time.thread_time()
        with contextlib.suppress(Exception):
            merged = served.score(rows)
            return _split(merged, sizes), [time.thread_time() - start]
    outcomes: list[BatchResult | Exception] = []
    durations: list[float] = []
    for part in split_rows(rows, sizes):
        start = time.thread_time()
        try:
            outcomes.append(served.score(part))
        except Exception as exc:
            outcomes.append(exc)
            continue
        durations.append(time.thread_time() - start)
    return outcomes, durations


def _split(merged: BatchResult, sizes: list[int]) -> list[BatchResult | Exception]:
    outcomes: list[BatchResult | Exception] = []
    start = 0
    for size in sizes:
        outcomes.append(merged.slice(start, start + size))
        start += size
    return outcomes


class Scorer:
    def __init__(self, start: Start) -> None:
        self._registry = Registry(start.registry)
        self._settings = start.settings
        self._log = start.log(start.settings) if start.log is not None else None
        self._executor = ThreadPoolExecutor(max_workers=1)  # the batcher's; never used here
        self._loaded: OrderedDict[Version, ServedModel] = OrderedDict()

    def score(self, tasks: list[Task]) -> Report:
        report = Report()
        for i, task in enumerate(tasks):
            try:
                served = self._load(task.scorer)
            except Exception as exc:
                report.failures[task.scorer] += len(task.sizes)
                report.errors[task.scorer] = f"cannot be loaded: {exc}"
                continue
            outcomes, durations = score_jobs(served, task.rows, task.sizes)
            if task.timed:
                report.durations.setdefault(task.scorer, []).extend(durations)
            self._compare(i, task, served.is_classifier, outcomes, report)
        return report

    def _compare(
        self, i: int, task: Task, classifier: bool, outcomes: list[BatchResult | Exception],
        report: Report,
    ) -> None:  # fmt: skip
        """Agreement of the scored jobs with their answers; failures counted; outputs logged."""
        answered: list[npt.NDArray[Any]] = []
        results: list[BatchResult] = []
        ids: list[str] = []  # the scored jobs' prediction ids, where the outputs are logged
        start = 0
        for size, outcome in zip(task.sizes, outcomes, strict=True):
            begin, start = start, start + size
            if isinstance(outcome, Exception) or len(outcome.predictions) != size:
                report.failures[task.scorer] += 1
                report.errors[task.scorer] = (
                    str(outcome)
                    if isinstance(outcome, Exception)
                    else f"returned {len(outcome.predictions)} rows for {size}"
                )
                continue
            answered.append(task.answered[begin:start])
            results.append(outcome)
            ids += task.ids[begin:start]
        if not results:
            return
        ok = len(results) == len(outcomes)
        mine = results[0] if len(results) == 1 else _merge(results)
        sent_all = task.answered if ok else np.concatenate(answered)
        if ids and self._log is not None:
            _log_outputs(self._log, task, mine, ids, report)
        name = task.scorer[0]
        if classifier:
            same = int(same_rows(sent_all, mine.predictions).sum())
            report.agree[(name, task.challenger, "agree")] += same
            report.agree[(name, task.challenger, "disagree")] += len(sent_all) - same
            return
        diff = np.abs(np.asarray(sent_all, dtype=float) - np.asarray(mine.predictions, dtype=float))
        report.differences.setdefault((name, task.challenger), []).extend(diff.ravel().tolist())

    def close(self) -> None:
        if self._log is not None:
            self._log.close()

    def _load(self, version: Version) -> ServedModel:
        served = self._loaded.get(version)
        if served is None:
            served = ServedModel.load(self._registry, *version, self._settings, self._executor)
            self._loaded[version] = served
            while len(self._loaded) > MAX_LOADED:
                self._loaded.popitem(last=False)
        self._loaded.move_to_end(version)
        return served


def _log_outputs(
    log: ShadowRows, task: Task, mine: BatchResult, ids: list[str], report: Report
) -> None:
    """The scored jobs' outputs into the prediction log; labels judged, refused rows
    reported."""
    name = task.scorer[0]
    try:
        judged = log.write(
            InferenceResult(name, task.challenger, mine.predictions, mine.probabilities, ids)
        )
    except Exception as exc:  # how many, where the log says (shadowlog.RowsNotWrittenError)
        report.log_failures += int(getattr(exc, "rows", len(ids)))
        report.log_error = str(exc)
        judged = getattr(exc, "judged", {})  # by the commits that went through
    for outcome, n in judged.items():
        report.judged[(name, task.challenger, outcome)] += n


def _merge(results: list[BatchResult]) -> BatchResult:
    predictions = np.concatenate([r.predictions for r in results])
    tables = [r.probabilities for r in results if r.probabilities is not None]
    return BatchResult(predictions, np.concatenate(tables) if len(tables) == len(results) else None)


def same_rows(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Per row, whether every output of ``a`` equals ``b``'s (labels of any type)."""
    equal: npt.NDArray[Any] = np.asarray(a == b)
    if equal.shape != a.shape:  # numpy could not compare elementwise (mixed label types)
        equal = np.array([x == y for x, y in zip(a.tolist(), b.tolist(), strict=True)])
    return np.asarray(equal.astype(bool).reshape(len(a), -1).all(axis=1), dtype=np.bool_)


def yield_cpu() -> None:
    """Run only on CPU time nothing else wants (SCHED_IDLE; else the lowest nice value).

    Where cores are short, production gets them first; when what is left is not enough, the
    server's queue drops (and counts) what this process cannot score. Linux schedules threads,
    so every thread there is now (BLAS's, started at import) is moved; threads started later
    inherit it from this one.
    """
    try:
        tasks = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tasks = [0]
    for tid in tasks:
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):  # not Linux, or refused
            with contextlib.suppress(OSError, AttributeError):
                os.setpriority(os.PRIO_PROCESS, tid, 19)


def main() -> None:
    # Ctrl-C reaches the whole process group: the server stops this one (end of input).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield_cpu()
    reader, writer = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the reports
    start = read_frame(reader)
    if not isinstance(start, Start):
        return
    configure_logging(start.settings.log_format, start.settings.log_level)
    scorer = Scorer(start)
    write_frame(writer, "ready")
    while (tasks := read_frame(reader)) is not None:
        write_frame(writer, scorer.score(tasks))
    scorer.close()


if __name__ == "__main__":
    # Run as the package module, so the classes unpickled here are the ones the server sent.
    from app.serving.offpath import main as run

    run()
