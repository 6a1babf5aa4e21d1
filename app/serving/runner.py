"""ServedModel: one loaded, verified, warmed model version and its async predict call."""

from __future__ import annotations

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
from app.serving.contract import InputContract, Rows
from app.serving.drift import DriftCounter
from app.serving.onepass import compile_scorer

log = logging.getLogger(__name__)


class ServedModel:
    """Owns an estimator; routes call ``await predict(rows)`` and never see batching."""

    def __init__(self, artifact: LoadedArtifact, settings: Settings, executor: Executor) -> None:
        self.metadata: ModelMetadata = artifact.metadata
        self.name = artifact.metadata.name
        self.version = artifact.metadata.version
        self.estimator: Any = artifact.estimator
        self.is_classifier = self.metadata.task == "classification"
        self.has_proba = self.is_classifier and hasattr(self.estimator, "predict_proba")
        self._score = compile_scorer(self.estimator, self.has_proba)
        self.contract = InputContract(self.metadata.feature_names)
        self.loaded_at = 0.0
        self._inference_time = metrics.INFERENCE_DURATION.labels(self.name, self.version)
        self._batch_size = metrics.BATCH_SIZE.labels(self.name)
        self._prediction_value = metrics.PREDICTION_VALUE.labels(self.name, self.version)
        self._drift = DriftCounter(self.metadata)
        self._class_counters = {
            str(label): metrics.PREDICTIONS.labels(self.name, self.version, str(label))
            for label in (self.metadata.classes or [])
        }
        queue_depth = metrics.QUEUE_DEPTH.labels(self.name)
        self._batcher = MicroBatcher(
            self._call_model,
            executor,
            max_rows=settings.batch_max_rows,
            max_wait_s=settings.batch_max_wait_ms / 1000,
            max_queue=settings.queue_size,
            on_depth=queue_depth.set,
        )

    @property
    def feature_names(self) -> list[str]:
        return self.contract.feature_names

    @property
    def queue_depth(self) -> int:
        return self._batcher.depth

    def warm_up(self) -> None:
        """Smoke-predict one row; raises if the model cannot score its own example."""
        width = len(self.metadata.features)
        example = self.metadata.example or [0.0] * width
        rows = np.asarray([example], dtype=np.float64)
        result = self._predict_raw(rows)
        if len(result.predictions) != 1:
            raise RuntimeError(f"smoke prediction returned {len(result.predictions)} rows for 1")
        self.loaded_at = time.time()

    async def predict(self, rows: Rows) -> BatchResult:
        return await self._batcher.submit(rows)

    def activate(self) -> None:
        metrics.MODEL_INFO.labels(self.name, self.version, self.metadata.sha256).set(1)
        metrics.MODEL_LOADED_TIMESTAMP.labels(self.name, self.version).set(self.loaded_at)
        self._drift.publish_reference()

    def deactivate(self) -> None:
        metrics.MODEL_INFO.labels(self.name, self.version, self.metadata.sha256).set(0)

    async def close(self) -> None:
        await self._batcher.close()

    def _predict_raw(self, rows: Rows) -> BatchResult:
        predictions, proba = self._score(rows)
        return BatchResult(predictions, proba)

    def _call_model(self, rows: Rows) -> BatchResult:
        """Runs in the inference thread: the model call, timed, plus its metrics."""
        start = time.perf_counter()
        result = self._predict_raw(rows)
        self._inference_time.observe(time.perf_counter() - start)
        self._batch_size.observe(len(rows))
        self._count(result.predictions)
        self._drift.observe(rows)
        return result

    def _count(self, predictions: np.ndarray[Any, Any]) -> None:
        if not self.is_classifier:
            for value in predictions.tolist():
                self._prediction_value.observe(float(value))
            return
        labels, counts = np.unique(predictions, return_counts=True)
        for label, count in zip(labels.tolist(), counts.tolist(), strict=True):
            counter = self._class_counters.get(str(label))
            if counter is None:
                counter = metrics.PREDICTIONS.labels(self.name, self.version, str(label))
                self._class_counters[str(label)] = counter
            counter.inc(count)
