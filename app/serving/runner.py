"""ServedModel: one loaded, verified, warmed model version and its async predict call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import Executor
from typing import Any

import numpy as np

from app import metrics
from app.config import Settings
from app.registry.metadata import ModelMetadata
from app.registry.store import LoadedArtifact
from app.serving.batching import BatchResult, MicroBatcher
from app.serving.confidence import ConfidenceCounter
from app.serving.contract import (
    InputContract,
    ModelInput,
    Rows,
    concat,
    model_input,
    split_rows,
)
from app.serving.drift import DriftCounter
from app.serving.exactness import derives_exactly, merges_exactly, probe_records
from app.serving.onepass import compile_scorer
from app.serving.threads import limit_model_threads
from app.serving.typed import default_row

log = logging.getLogger(__name__)


class ServedModel:
    """Owns an estimator; routes call ``await predict(rows)`` and never see batching."""

    def __init__(self, artifact: LoadedArtifact, settings: Settings, executor: Executor) -> None:
        self.metadata: ModelMetadata = artifact.metadata
        self.name = artifact.metadata.name
        self.version = artifact.metadata.version
        self.estimator: Any = artifact.estimator
        self.is_classifier = self.metadata.task == "classification"
        # Multi-output classifiers give one probability table per output: not served.
        single_output = not isinstance(getattr(self.estimator, "classes_", None), list)
        self.has_proba = (
            self.is_classifier and hasattr(self.estimator, "predict_proba") and single_output
        )
        # Here, after the load: a thread pool the artifact brought is limited too, in this
        # thread (which warms it up) and in the inference thread before this version's calls.
        limit_model_threads(settings.model_threads)
        executor.submit(limit_model_threads, settings.model_threads)
        self.contract = InputContract(self.metadata.features, self.metadata.input_format)
        # One-pass scorers only for float64 matrices; typed rows use the model's own methods.
        self._score = compile_scorer(self.estimator, self.has_proba, fast=self.contract.numeric)
        self.loaded_at = 0.0
        self._smoke_error = ""
        self._inference_time = metrics.INFERENCE_DURATION.labels(self.name, self.version)
        self.answered = metrics.VERSION_REQUESTS.labels(self.name, self.version, "ok")
        self._batch_size = metrics.BATCH_SIZE.labels(self.name)
        self._prediction_value = metrics.PREDICTION_VALUE.labels(self.name, self.version)
        self._drift = DriftCounter(self.metadata)
        self._confidence = ConfidenceCounter(self.metadata, self.has_proba)
        self._class_counters = {
            str(label): metrics.PREDICTIONS.labels(self.name, self.version, str(label))
            for label in (self.metadata.classes or [])
        }
        self._queue_depth = metrics.QUEUE_DEPTH.labels(self.name)
        self._depth = 0
        self._executor = executor
        self._batcher = MicroBatcher(
            self._call_model,
            executor,
            max_rows=settings.batch_max_rows,
            max_wait_s=settings.batch_max_wait_ms / 1000,
            max_queue=settings.queue_size,
            on_depth=self._on_depth,
            predict_each=self._call_each,
        )

    @property
    def queue_depth(self) -> int:
        return self._batcher.depth

    def warm_up(self) -> None:
        """Smoke-predict one row; raises if the model cannot score its own example."""
        if not self.smoke_test():
            raise RuntimeError(f"smoke prediction failed: {self._smoke_error}")
        probe = probe_records(self.metadata)
        if not derives_exactly(self._score, self.estimator, self.contract, probe):
            self._score = compile_scorer(self.estimator, self.has_proba, derive=False)
        self._batcher.merge = merges_exactly(self._score, self.contract, probe)
        if not self._batcher.merge:
            log.info(
                "%s version %s: batched rows differ from rows scored alone in the last bits; "
                "each request gets its own model call",
                self.name,
                self.version,
            )
        self.loaded_at = time.time()

    def smoke_test(self) -> bool:
        """Whether the model still scores its example row (tells bad input from a bad model)."""
        example = self.metadata.example or default_row(self.metadata.features)
        try:
            result = self._predict_raw(self.contract.records([list(example)], "example"))
        except Exception as exc:
            self._smoke_error = f"{type(exc).__name__}: {exc}"
            return False
        if len(result.predictions) != 1:
            self._smoke_error = f"returned {len(result.predictions)} rows for 1"
            return False
        return True

    async def still_scores(self) -> bool:
        """``smoke_test`` in the inference thread, after the calls queued before it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.smoke_test)

    async def predict(self, rows: Rows) -> BatchResult:
        return await self._batcher.submit(rows)

    def activate(self) -> None:
        metrics.MODEL_INFO.labels(self.name, self.version, self.metadata.sha256).set(1)
        self.announce()

    def announce(self) -> None:
        """Publish the load time and the drift reference (a canary or shadow does this only)."""
        metrics.MODEL_LOADED_TIMESTAMP.labels(self.name, self.version).set(self.loaded_at)
        self._drift.publish_reference()
        self._confidence.publish()

    def score_off_path(
        self, rows: Rows, sizes: list[int]
    ) -> tuple[list[BatchResult | Exception], list[float]]:
        """Score several requests' ``rows`` (merged; ``sizes`` rows each) outside the batcher
        and the served counters: each request's outcome, and the durations of the model calls.

        Durations are the calling thread's CPU time: the off-path scorer runs only on idle CPU,
        so its wall time would measure the host's load (a shadow's first calls, preempted by
        production, took 56 ms of wall time for a 0.5 ms model) rather than the model.

        One call for all when this model's merged rows are bit for bit its rows scored alone
        (checked at warm-up, as for the batcher); when that call fails, or the model does not
        merge exactly, one call per request, so only a bad request fails.
        """
        if self._batcher.merge or len(sizes) == 1:
            start = time.thread_time()
            with contextlib.suppress(Exception):
                merged = self._predict_raw(rows)
                return _split(merged, sizes), [time.thread_time() - start]
        outcomes: list[BatchResult | Exception] = []
        durations: list[float] = []
        for part in split_rows(rows, sizes):
            start = time.thread_time()
            try:
                outcomes.append(self._predict_raw(part))
            except Exception as exc:
                outcomes.append(exc)
                continue
            durations.append(time.thread_time() - start)
        return outcomes, durations

    def _on_depth(self, depth: int) -> None:
        # By difference: a canary's batcher shares the model's gauge with production's.
        self._queue_depth.inc(depth - self._depth)
        self._depth = depth

    def deactivate(self) -> None:
        metrics.MODEL_INFO.labels(self.name, self.version, self.metadata.sha256).set(0)

    async def close(self) -> None:
        await self._batcher.close()

    def _predict_raw(self, rows: Rows) -> BatchResult:
        return self._score_input(model_input(rows))

    def _score_input(self, given: ModelInput) -> BatchResult:
        predictions, proba = self._score(given)
        return BatchResult(predictions, proba)

    def _call_model(self, rows: Rows) -> BatchResult:
        """Runs in the inference thread: the model call, timed, plus its metrics."""
        start = time.perf_counter()
        given = model_input(rows)
        result = self._score_input(given)
        self._inference_time.observe(time.perf_counter() - start)
        self._batch_size.observe(len(rows))
        self._count(result.predictions)
        self._confidence.observe(result.probabilities)
        self._drift.observe(given)
        return result

    def _call_each(self, requests: list[Rows]) -> list[BatchResult | Exception]:
        """Each request its own model call (exact for any model); counters and drift once."""
        outcomes: list[BatchResult | Exception] = []
        scored: list[tuple[ModelInput, BatchResult]] = []
        for rows in requests:
            start = time.perf_counter()
            try:
                given = model_input(rows)
                result = self._score_input(given)
            except Exception as exc:
                outcomes.append(exc)
                continue
            self._inference_time.observe(time.perf_counter() - start)
            self._batch_size.observe(len(rows))
            outcomes.append(result)
            scored.append((given, result))
        if scored:
            self._count(np.concatenate([r.predictions for _, r in scored]))
            if self._confidence.enabled:
                self._confidence.observe(np.concatenate([r.probabilities for _, r in scored]))
            self._drift.observe(model_input(concat([given for given, _ in scored])))
        return outcomes

    def _count(self, predictions: np.ndarray[Any, Any]) -> None:
        if not self.is_classifier:
            for value in np.ravel(predictions).tolist():  # multi-output: every output's value
                self._prediction_value.observe(float(value))
            return
        labels, counts = np.unique(predictions, return_counts=True)
        for label, count in zip(labels.tolist(), counts.tolist(), strict=True):
            counter = self._class_counters.get(str(label))
            if counter is None:
                counter = metrics.PREDICTIONS.labels(self.name, self.version, str(label))
                self._class_counters[str(label)] = counter
            counter.inc(count)


def _split(merged: BatchResult, sizes: list[int]) -> list[BatchResult | Exception]:
    outcomes: list[BatchResult | Exception] = []
    start = 0
    for size in sizes:
        outcomes.append(merged.slice(start, start + size))
        start += size
    return outcomes
