"""CallObserver: what one served version's model calls tell Prometheus.

Latency, batch size, predicted classes (or values), calibrated confidence and the drift bins of
the rows: every served call is observed once, in the inference thread, after it succeeded. The
metric children are resolved once per version, not per call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from app import metrics
from app.registry.metadata import ModelMetadata
from app.serving.attribution_counts import publish_reference
from app.serving.batching import BatchResult
from app.serving.confidence import ConfidenceCounter
from app.serving.contract import Rows, concat
from app.serving.drift import DriftCounter


class CallObserver:
    def __init__(self, metadata: ModelMetadata, has_proba: bool) -> None:
        name, version = metadata.name, metadata.version
        self.metadata = metadata
        self._is_classifier = metadata.task == "classification"
        self._inference_time = metrics.INFERENCE_DURATION.labels(name, version)
        self._batch_size = metrics.BATCH_SIZE.labels(name)
        self._prediction_value = metrics.PREDICTION_VALUE.labels(name, version)
        self._drift = DriftCounter(metadata)
        self._confidence = ConfidenceCounter(metadata, has_proba)
        self.answered = metrics.VERSION_REQUESTS.labels(name, version, "ok")
        self._queue_depth = metrics.QUEUE_DEPTH.labels(name)
        self._depth = 0
        self._class_counters = {
            str(label): metrics.PREDICTIONS.labels(name, version, str(label))
            for label in (metadata.classes or [])
        }

    def publish(self, loaded_at: float) -> None:
        """The load time and the references a version's live values are compared with (drift,
        confidence, attribution)."""
        metrics.MODEL_LOADED_TIMESTAMP.labels(self.metadata.name, self.metadata.version).set(
            loaded_at
        )
        self._drift.publish_reference()
        self._confidence.publish()
        publish_reference(self.metadata)

    def queue_depth(self, depth: int) -> None:
        # By difference: a canary's batcher shares the model's gauge with production's.
        self._queue_depth.inc(depth - self._depth)
        self._depth = depth

    def timed(self, seconds: float, rows: int) -> None:
        """One model call: its duration and its rows."""
        self._inference_time.observe(seconds)
        self._batch_size.observe(rows)

    def scored(self, given: list[Rows], results: list[BatchResult]) -> None:
        """What the calls answered (classes or values, confidence) and the drift of their rows."""
        if not results:
            return
        self._count(_joined([r.predictions for r in results]))
        if self._confidence.enabled:
            probabilities = [r.probabilities for r in results if r.probabilities is not None]
            if probabilities:
                self._confidence.observe(_joined(probabilities))
        self._drift.observe(given[0] if len(given) == 1 else concat(given))

    def _count(self, predictions: npt.NDArray[Any]) -> None:
        if not self._is_classifier:
            for value in np.ravel(predictions).tolist():  # multi-output: every output's value
                self._prediction_value.observe(float(value))
            return
        labels, counts = np.unique(predictions, return_counts=True)
        for label, count in zip(labels.tolist(), counts.tolist(), strict=True):
            counter = self._class_counters.get(str(label))
            if counter is None:
                counter = metrics.PREDICTIONS.labels(
                    self.metadata.name, self.metadata.version, str(label)
                )
                self._class_counters[str(label)] = counter
            counter.inc(count)


def _joined(arrays: list[npt.NDArray[Any]]) -> npt.NDArray[Any]:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
