"""Input-drift counters: every scored value counted into its training-reference bin.

Bins follow ``app.training.reference.bin_index``: with a feature's inner edges ``e``, a value
``v`` lands in bin ``i`` = the number of edges strictly below ``v`` (``np.searchsorted`` with
``side="left"``), so bins run ``0 .. len(e)``. One batch costs one broadcast comparison and one
``bincount`` over all features, then one counter increment per non-empty (feature, bin).

Cardinality of ``modelserve_feature_bin_total`` and ``modelserve_feature_reference_ratio`` per
model version: at most ``MAX_DRIFT_FEATURES`` features x (``REFERENCE_BINS`` = 10) bins.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app import metrics
from app.registry.metadata import ModelMetadata

# Beyond this many features only the first ones are tracked: keeps series per version bounded.
MAX_DRIFT_FEATURES = 100


class DriftCounter:
    def __init__(self, meta: ModelMetadata) -> None:
        self.meta = meta
        refs = meta.reference.features
        tracked = [(i, name) for i, name in enumerate(meta.feature_names) if name in refs][
            :MAX_DRIFT_FEATURES
        ]
        self.columns = np.asarray([i for i, _ in tracked], dtype=np.intp)
        self.names = [name for _, name in tracked]
        widths = [len(refs[name].edges) for name in self.names]
        width = max(widths, default=0)
        # Edges padded with +inf: a finite value is never above the padding.
        self.edges = np.full((len(self.names), width), np.inf)
        for row, name in enumerate(self.names):
            self.edges[row, : widths[row]] = refs[name].edges
        bins = [w + 1 for w in widths]
        self.offsets = np.concatenate([[0], np.cumsum(bins)[:-1]]).astype(np.intp)
        self.total_bins = int(sum(bins))
        self.counters = [
            metrics.FEATURE_BIN.labels(meta.name, meta.version, name, str(b))
            for name, n in zip(self.names, bins, strict=True)
            for b in range(n)
        ]

    @property
    def enabled(self) -> bool:
        return self.total_bins > 0

    def bin_counts(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
        """Counts per (feature, bin), flattened in ``self.counters`` order."""
        values = rows[:, self.columns]  # (n, F)
        idx = (values[:, :, None] > self.edges[None, :, :]).sum(axis=2)  # (n, F)
        flat = (idx + self.offsets[None, :]).ravel()
        counts: npt.NDArray[np.intp] = np.bincount(flat, minlength=self.total_bins)
        return counts

    def observe(self, rows: npt.NDArray[np.float64]) -> None:
        if not self.enabled or len(rows) == 0:
            return
        counts = self.bin_counts(rows)
        for k in np.flatnonzero(counts).tolist():
            self.counters[k].inc(int(counts[k]))

    def publish_reference(self) -> None:
        """Export the training shares the drift rules compare against (called on activate)."""
        meta = self.meta
        for name in self.names:
            for b, share in enumerate(meta.reference.features[name].proportions):
                metrics.FEATURE_REFERENCE_RATIO.labels(meta.name, meta.version, name, str(b)).set(
                    share
                )
        for label, share in meta.reference.class_ratio.items():
            metrics.CLASS_REFERENCE_RATIO.labels(meta.name, meta.version, label).set(share)
