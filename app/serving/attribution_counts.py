"""The attribution series of one version: what its sampled rows' explanations add up to, and
the training-time shares they are compared with.

Per version, ``modelserve_attribution_abs_sum_total{feature}`` adds each feature's absolute
contributions (``app.serving.explain.reference.abs_sums``) and
``modelserve_attribution_rows_total`` the rows; ``modelserve_attribution_reference_share`` is
the version's ``attribution_reference`` from metadata. At most ``MAX_ATTRIBUTION_FEATURES``
features, the first ones, like drift's; a reference over more is shared out again over those,
so live and reference shares are of the same total. Label values come from metadata only.
"""

from __future__ import annotations

from app import metrics
from app.registry.metadata import ModelMetadata
from app.serving.drift import MAX_DRIFT_FEATURES
from app.serving.explain.reference import abs_sums
from app.serving.explain.result import Explanation

MAX_ATTRIBUTION_FEATURES = MAX_DRIFT_FEATURES


class VersionAttribution:
    """The version's counter children, made once."""

    def __init__(self, meta: ModelMetadata) -> None:
        name, version = meta.name, meta.version
        tracked = meta.feature_names[:MAX_ATTRIBUTION_FEATURES]
        self._sums = [metrics.ATTRIBUTION_ABS_SUM.labels(name, version, f) for f in tracked]
        self._rows = metrics.ATTRIBUTION_ROWS.labels(name, version)

    def add(self, explanation: Explanation) -> None:
        sums = abs_sums(explanation)[: len(self._sums)]
        for counter, value in zip(self._sums, sums.tolist(), strict=True):
            counter.inc(value)
        self._rows.inc(len(explanation))


def publish_reference(meta: ModelMetadata) -> None:
    """The version's training-time shares as gauges (nothing for a version without them)."""
    stored = meta.attribution_reference
    tracked = [f for f in meta.feature_names[:MAX_ATTRIBUTION_FEATURES] if f in stored]
    total = sum(stored[f] for f in tracked)
    if total <= 0:
        return
    for feature in tracked:
        metrics.ATTRIBUTION_REFERENCE_SHARE.labels(meta.name, meta.version, feature).set(
            stored[feature] / total
        )
