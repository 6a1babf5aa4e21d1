"""Live confidence of a classifier version: what its accuracy is expected to be, unlabelled.

Each scored row adds its top-class probability, passed through the version's isotonic map
from metadata (``np.interp`` on the stored thresholds) when training fitted one, to
``modelserve_prediction_confidence``. Regressors (and classifiers without predict_proba) are
not estimated: there is no probability of being right to add up.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from app import metrics
from app.registry.metadata import ModelMetadata


class ConfidenceCounter:
    def __init__(self, metadata: ModelMetadata, has_proba: bool) -> None:
        self.metadata = metadata
        self.enabled = has_proba and metadata.task == "classification"
        calibration = metadata.calibration
        mapping = calibration.map if calibration is not None else None
        self._map = None if mapping is None else (np.asarray(mapping.x), np.asarray(mapping.y))
        if not self.enabled:
            return  # no series at all: a regressor's panel stays empty rather than at 0
        child = metrics.PREDICTION_CONFIDENCE.labels(metadata.name, metadata.version)
        # One increment per bucket and one of the sum per batch, not one observe() per row:
        # the values and layout are prometheus_client's own (observe() adds 1 to the first
        # bucket whose bound is >= the value), so /metrics and multiprocess files are unchanged.
        self._sum = child._sum
        self._buckets = child._buckets
        self._bounds = np.asarray(child._upper_bounds, dtype=np.float64)

    def observe(self, probabilities: npt.NDArray[Any] | None) -> None:
        if not self.enabled or probabilities is None or len(probabilities) == 0:
            return
        top = probabilities.max(axis=1)
        if self._map is not None:
            top = np.interp(top, self._map[0], self._map[1])
        index = np.searchsorted(self._bounds, top)
        if len(index) == 1:  # the common single-row call: no counting pass
            self._buckets[int(index[0])].inc(1)
        else:
            counts = np.bincount(index, minlength=len(self._bounds))
            for i in np.flatnonzero(counts).tolist():
                self._buckets[i].inc(int(counts[i]))
        self._sum.inc(float(top.sum()))

    def publish(self) -> None:
        """The held-out accuracy the live estimate is compared with (alert and dashboard)."""
        accuracy = self.metadata.metrics.get("accuracy")
        if self.enabled and accuracy is not None:
            metrics.HELDOUT_ACCURACY.labels(self.metadata.name, self.metadata.version).set(accuracy)
