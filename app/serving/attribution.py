"""Attribution monitoring: a sampled share of the answered rows, explained after the answer and
off the request path, added up per version and feature (``attribution_counts``).

The request path (``Inference.predict``) offers every answered request's rows. Each row is
sampled with probability ``MODELSERVE_ATTRIBUTION_SAMPLE_RATE``, independently of the others:
the number of rows before the next sampled one is drawn from the geometric law and counted
down, so an answer with no sampled row costs a subtraction and a comparison. Sampled rows go,
with the version that answered them (and a shadow, which scores the same rows), onto a queue
bounded at ``QUEUE_ROWS`` rows; past it they are dropped and counted
(``modelserve_attribution_dropped_rows_total{reason="queue_full"}``), never waited for.

A thread of its own takes the queue every ``FLUSH_S`` seconds and explains each version's rows
with the version's checked explainer (``Explainers.explainer``: built once, in the explain
thread, and shared with ``:explain``). A version with no exact explainer is logged once and
counted nowhere; a call that fails counts its rows as ``failed``.

Explaining must not slow the answers. TreeSHAP holds the GIL for its whole call (about half a
millisecond a row for 200 trees), and so does much of any explainer's Python: the event loop
waits for as long. So a version's first call takes one row, and each later one as many as fit
in ``CALL_S`` of the thread's CPU, or in twice its latest 1-row call's if that is more (a
pipeline's transforms cost the same for 1 row and 60: fewer rows would not shorten the call,
only make more of them), from the rows per CPU second of the version's last call (at most
``CHUNK_ROWS``). After each call the thread waits ``(1 - CPU_SHARE) / CPU_SHARE`` times the
CPU it spent: it never takes more than ``CPU_SHARE`` of a core. Rows it has no time for wait
in the queue, which counts a row until it is explained; past its bound the newest are dropped
and counted, as above.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass

import pandas as pd

from app import metrics
from app.config import Settings
from app.errors import clip
from app.failure_log import RepeatedFailureLog
from app.serving.attribution_counts import VersionAttribution
from app.serving.contract import Rows, TypedRows, concat
from app.serving.explain.model import ModelExplainer
from app.serving.explain.result import NotExplainableError
from app.serving.explain.service import Built, Explainers, explain_served
from app.serving.runner import ServedModel
from app.serving.threads import limit_model_threads

log = logging.getLogger(__name__)

QUEUE_ROWS = 4096  # sampled rows waiting; at the default rate, 100 s of 4,000 answers a second
FLUSH_S = 1.0
CHUNK_ROWS = 64
CALL_S = 0.002  # CPU a call aims at: how long the event loop may wait for the GIL at a time
CPU_SHARE = 0.25  # of one core, at most: far above what the default rate needs
KEPT = 16  # versions whose counters are kept
QUEUE_FULL, FAILED = "queue_full", "failed"
VersionKey = tuple[str, str, str]


@dataclass(frozen=True)
class _Job:
    served: ServedModel
    built: Future[Built]
    counts: VersionAttribution
    rows: Rows


def _key(served: ServedModel) -> VersionKey:
    return served.name, served.version, served.metadata.sha256


def _take(rows: Rows, picks: list[int] | slice) -> Rows:
    """The rows at ``picks``, in the request's own form."""
    if isinstance(rows, TypedRows):
        cells = rows.cells[picks] if isinstance(picks, slice) else [rows.cells[i] for i in picks]
        return TypedRows(rows.features, rows.input_format, cells)
    if isinstance(rows, pd.DataFrame):
        return rows.iloc[picks].reset_index(drop=True)
    return rows[picks]


class Attribution:
    def __init__(
        self,
        rate: float,
        explainers: Explainers,
        *,
        model_threads: int = 1,
        queue_rows: int = QUEUE_ROWS,
        flush_s: float = FLUSH_S,
        cpu_share: float = CPU_SHARE,
        seed: int | None = None,
    ) -> None:
        if not 0 < rate <= 1:
            raise ValueError(f"the attribution sample rate must be in (0, 1], not {rate}")
        self._random = random.Random(seed).random
        self._log_keep = math.log1p(-rate) if rate < 1 else -math.inf
        self._skip = self._gap()
        self._explainers = explainers
        self._model_threads = model_threads
        self._queue_rows = queue_rows
        self._flush_s = flush_s
        self._pause = (1.0 - cpu_share) / cpu_share  # the wait after a call, per CPU second
        self._calls: dict[VersionKey, tuple[float, int]] = {}  # CPU s of a 1-row call, rows
        self._jobs: deque[_Job] = deque()
        self._queued = 0  # rows in _jobs
        self._lock = threading.Lock()  # _queued: added to on the loop, taken from in the thread
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counts: OrderedDict[VersionKey, VersionAttribution] = OrderedDict()
        self._refused: set[VersionKey] = set()
        self._failures = RepeatedFailureLog(log, "explaining sampled rows failed", unit="rows")

    @classmethod
    def from_settings(cls, settings: Settings, explainers: Explainers) -> Attribution | None:
        """The server's sampler; None when ``attribution_sample_rate`` is 0 (off)."""
        rate = settings.attribution_sample_rate
        return cls(rate, explainers, model_threads=settings.model_threads) if rate > 0 else None

    def _gap(self) -> int:
        """Rows passed over before the next sampled one: geometric, P(k) = (1 - rate)^k rate."""
        return int(math.log(1.0 - self._random()) / self._log_keep)

    # ---- the request path (the event loop) -------------------------------------------------

    def offer(self, rows: Rows, served: ServedModel, shadow: ServedModel | None = None) -> None:
        """An answered request's rows: the sampled ones queued for ``served`` (and a shadow)."""
        n = len(rows)
        if n <= self._skip:
            self._skip -= n
            return
        picks = []
        i = self._skip
        while i < n:
            picks.append(i)
            i += 1 + self._gap()
        self._skip = i - n
        sampled = rows if len(picks) == n else _take(rows, picks)
        self._queue(served, sampled)
        if shadow is not None:
            self._queue(shadow, sampled)

    def _queue(self, served: ServedModel, rows: Rows) -> None:
        if _key(served) in self._refused:
            return
        with self._lock:
            full = self._queued + len(rows) > self._queue_rows
            if not full:
                self._queued += len(rows)
        if full:
            metrics.ATTRIBUTION_DROPPED.labels(served.name, QUEUE_FULL).inc(len(rows))
            return
        # Asked here, in the loop: Explainers is the loop's (and builds in its own thread).
        built = self._explainers.explainer(served)
        self._jobs.append(_Job(served, built, self._version(served), rows))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="attribution", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the thread; rows still queued are not explained."""
        self._stop.set()

    # ---- the attribution thread --------------------------------------------------------------

    def _run(self) -> None:
        limit_model_threads(self._model_threads)
        while not self._stop.wait(self._flush_s):
            try:
                self.flush()
            except Exception:  # the thread must outlive anything one flush meets
                log.exception("attribution flush failed")

    def flush(self) -> None:
        """Explain and count every queued row, one version at a time (the thread's work)."""
        jobs: list[_Job] = []
        while self._jobs:
            jobs.append(self._jobs.popleft())
        if not jobs:
            return
        versions: dict[int, list[_Job]] = {}
        for job in jobs:
            versions.setdefault(id(job.served), []).append(job)
        for group in versions.values():
            self._explain(group[0], concat([job.rows for job in group]))

    def _explain(self, job: _Job, rows: Rows) -> None:
        """Every row explained, a call at a time, each followed by its pause."""
        served, done = job.served, 0
        try:
            try:
                explainer = job.built.result()  # waits for a build the explain thread is making
            except CancelledError:  # the explainers closed: shutting down
                return
            if isinstance(explainer, NotExplainableError):
                self._refuse(served, explainer)
                return
            key = _key(served)
            while done < len(rows) and not self._stop.is_set():
                one_row, size = self._calls.get(key, (0.0, 1))
                size = min(size, len(rows) - done)
                spent = self._call(explainer, job, _take(rows, slice(done, done + size)))
                done += size
                self._release(size)
                one_row = spent if size == 1 else one_row  # the latest: the host's load moves
                fits = int(max(CALL_S, 2 * one_row) * size / spent)
                self._calls[key] = one_row, max(1, min(CHUNK_ROWS, fits))
                self._stop.wait(spent * self._pause)
        finally:
            self._release(len(rows) - done)

    def _call(self, explainer: ModelExplainer, job: _Job, part: Rows) -> float:
        """``part`` explained into the version's counters; the thread's CPU seconds it took."""
        served, start = job.served, time.thread_time()
        try:
            job.counts.add(explain_served(explainer, served, part))
        except Exception as exc:  # a row failing the sum check, a row the model refuses
            metrics.ATTRIBUTION_DROPPED.labels(served.name, FAILED).inc(len(part))
            said = f"{type(exc).__name__}: {clip(str(exc), 512)}"
            self._failures.failed(f"{served.name} version {served.version}: {said}", len(part))
        else:
            self._failures.succeeded()
        return max(time.thread_time() - start, 1e-6)

    def _release(self, rows: int) -> None:
        with self._lock:
            self._queued -= rows

    def _version(self, served: ServedModel) -> VersionAttribution:
        """The version's counters, made (at 0) on its first sampled row, in the loop: a flush
        before their first increase, so a scrape in between sees that increase whole."""
        key = _key(served)
        found = self._counts.get(key)
        if found is None:
            found = self._counts[key] = VersionAttribution(served.metadata)
            while len(self._counts) > KEPT:
                self._calls.pop(self._counts.popitem(last=False)[0], None)
        self._counts.move_to_end(key)
        return found

    def _refuse(self, served: ServedModel, refusal: NotExplainableError) -> None:
        key = _key(served)
        if key not in self._refused:
            self._refused.add(key)
            log.info(
                "model %s version %s: no attribution counted, it has no explainer: %s",
                served.name, served.version, refusal,
            )  # fmt: skip
