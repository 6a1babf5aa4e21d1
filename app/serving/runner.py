"""ServedModel: one loaded, verified, warmed model version, its batcher and its model call."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from typing import Any

import numpy as np
import numpy.typing as npt

from app import metrics
from app.config import Settings
from app.registry.metadata import ModelMetadata
from app.registry.store import LoadedArtifact, Registry
from app.serving.batching import BatchResult, MicroBatcher
from app.serving.contract import InputContract, Rows
from app.serving.exactness import settle_scorer
from app.serving.inline import InlineCalls
from app.serving.observer import CallObserver
from app.serving.onepass import COMPILED, LINEAR, compile_scorer, serves_probabilities
from app.serving.prefixprobe import COMPILED_TRANSFORM
from app.serving.threads import limit_model_threads
from app.serving.typed import default_row

# Scorers whose calls hold the GIL throughout and take time in proportion to their rows: their
# calls may run on the event loop (app.serving.inline).
INLINE_SCORERS = (COMPILED, LINEAR)
INLINE_TRANSFORMS = (None, COMPILED_TRANSFORM, LINEAR)


class ServedModel:
    """Owns an estimator; routes call ``await predict(rows)`` and never see batching."""

    def __init__(self, artifact: LoadedArtifact, settings: Settings, executor: Executor) -> None:
        self.metadata: ModelMetadata = artifact.metadata
        self.name = artifact.metadata.name
        self.version = artifact.metadata.version
        self.estimator: Any = artifact.estimator
        self.is_classifier = self.metadata.task == "classification"
        self.has_proba = serves_probabilities(self.estimator, self.is_classifier)
        # Here, after the load: a thread pool the artifact brought is limited too, in this
        # thread (which warms it up) and in the inference thread before this version's calls.
        limit_model_threads(settings.model_threads)
        executor.submit(limit_model_threads, settings.model_threads)
        self.contract = InputContract(
            self.metadata.features, self.metadata.input_format, settings.max_string_length
        )
        # Compiled tree ensembles for any rows; the other one-pass scorers only for float64
        # matrices (typed rows use the model's own methods).
        self._scorer = compile_scorer(self.estimator, self.has_proba, fast=self.contract.numeric)
        self.loaded_at = 0.0
        self._smoke_error = ""
        # The smoke test's one-row predictions: their dtype and shape per row (several values
        # for a multi-output model) are what the OIP model metadata declares.
        self.prediction_example: npt.NDArray[Any] | None = None
        self.observer = CallObserver(self.metadata, self.has_proba)
        self._executor = executor
        self._inline_max_s = settings.inline_max_ms / 1000
        self._batcher = MicroBatcher(
            self._call_model,
            executor,
            max_rows=settings.batch_max_rows,
            max_wait_s=settings.batch_max_wait_ms / 1000,
            max_queue=settings.queue_size,
            on_depth=self.observer.queue_depth,
            predict_each=self._call_each,
        )

    @classmethod
    def load(
        cls, registry: Registry, name: str, version: str, settings: Settings, executor: Executor
    ) -> ServedModel:
        """A version verified, loaded and warmed: how the server, its off-path scorer and the
        CLI's load check (``app.serving.loadcheck``) all bring a version up."""
        served = cls(registry.load(name, version), settings, executor)
        served.warm_up()
        return served

    @property
    def queue_depth(self) -> int:
        return self._batcher.depth

    @property
    def scorer(self) -> str:
        """What answers this version's calls: ``compiled-trees``, ``one-pass-linear`` or
        ``scikit-learn`` (settled at load by the exactness probes)."""
        return self._scorer.name

    @property
    def transform(self) -> str | None:
        """What runs a pipeline's transforming steps on typed rows: ``compiled`` (proven at
        load), ``one-pass-linear``, ``scikit-learn``; None without such steps."""
        return self._scorer.transform

    @property
    def inline(self) -> bool:
        """Whether this version's calls may run on the event loop (``app.serving.inline``)."""
        return self._batcher.inline is not None

    @property
    def merges(self) -> bool:
        """Whether requests merged into one call get the bits they get alone (probed at load)."""
        return self._batcher.merge

    def warm_up(self) -> None:
        """Smoke-predict one row; raises if the model cannot score its own example."""
        if not self.smoke_test():
            raise RuntimeError(f"smoke prediction failed: {self._smoke_error}")
        self._scorer, self._batcher.merge = settle_scorer(
            self._scorer, self.estimator, self.has_proba, self.contract, self.metadata
        )
        compiled = self.scorer in INLINE_SCORERS and self.transform in INLINE_TRANSFORMS
        if compiled and self._inline_max_s > 0:
            self._batcher.inline = InlineCalls(self._inline_max_s)
        self.loaded_at = time.time()

    def smoke_test(self) -> bool:
        """Whether the model still scores its example row (tells bad input from a bad model)."""
        example = self.metadata.example or default_row(self.metadata.features)
        try:
            result = self.score(self.contract.records([list(example)], "example"))
        except Exception as exc:
            self._smoke_error = f"{type(exc).__name__}: {exc}"
            return False
        if len(result.predictions) != 1:
            self._smoke_error = f"returned {len(result.predictions)} rows for 1"
            return False
        self.prediction_example = np.asarray(result.predictions)
        return True

    async def still_scores(self) -> bool:
        """``smoke_test`` in the inference thread, after the calls queued before it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.smoke_test)

    def enqueue(self, rows: Rows) -> asyncio.Future[BatchResult]:
        """The served call, queued to be batched with other requests and observed: the future
        of its result."""
        return self._batcher.enqueue(rows)

    def score(self, rows: Rows) -> BatchResult:
        """One model call in the calling thread, outside the batcher and the served metrics."""
        return self._score(rows)

    def activate(self) -> None:
        metrics.MODEL_INFO.labels(self.name, self.version, self.metadata.sha256).set(1)
        self.announce()

    def announce(self) -> None:
        """Publish the load time and the drift reference (a canary or shadow does this only)."""
        self.observer.publish(self.loaded_at)

    def deactivate(self) -> None:
        metrics.MODEL_INFO.labels(self.name, self.version, self.metadata.sha256).set(0)

    async def close(self) -> None:
        await self._batcher.close()

    def _score(self, rows: Rows) -> BatchResult:
        predictions, proba = self._scorer(rows)
        return BatchResult(predictions, proba)

    def _call_model(self, rows: Rows) -> BatchResult:
        """The batcher's call for merged requests, in the inference thread."""
        start = time.perf_counter()
        result = self._score(rows)
        self.observer.timed(time.perf_counter() - start, len(rows))
        self.observer.scored([rows], [result])
        return result

    def _call_each(self, requests: list[Rows]) -> list[BatchResult | Exception]:
        """Each request its own model call (exact for any model), observed together."""
        outcomes: list[BatchResult | Exception] = []
        given: list[Rows] = []
        results: list[BatchResult] = []
        for rows in requests:
            start = time.perf_counter()
            try:
                given.append(rows)
                results.append(self._score(rows))
            except Exception as exc:
                del given[len(results) :]
                outcomes.append(exc)
                continue
            self.observer.timed(time.perf_counter() - start, len(rows))
            outcomes.append(results[-1])
        self.observer.scored(given, results)
        return outcomes
