"""Facts about the training data stored with each version: fingerprint and reference bins."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from app.registry.metadata import FeatureReference, Reference

REFERENCE_BINS = 10


def data_fingerprint(X: npt.NDArray[np.float64], y: npt.NDArray[np.generic]) -> str:
    """sha256 over the training matrix and target, independent of how they were loaded."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    digest.update(np.asarray(y).astype(str).astype("U64").tobytes())
    digest.update(str(X.shape).encode())
    return f"sha256:{digest.hexdigest()}"


def feature_reference(
    values: npt.NDArray[np.float64], bins: int = REFERENCE_BINS
) -> FeatureReference:
    """Quantile edges (deduplicated) and the training share of each resulting bin."""
    quantiles = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(quantiles)
    idx = np.searchsorted(edges, values, side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    return FeatureReference(
        edges=[float(e) for e in edges],
        proportions=[float(c) / len(values) for c in counts],
        min=float(values.min()),
        max=float(values.max()),
        mean=float(values.mean()),
        std=float(values.std()),
    )


def build_reference(
    X: npt.NDArray[np.float64],
    y: npt.NDArray[np.generic],
    feature_names: Sequence[str],
    classification: bool,
) -> Reference:
    features = {name: feature_reference(X[:, i]) for i, name in enumerate(feature_names)}
    class_ratio: dict[str, float] = {}
    if classification:
        labels, counts = np.unique(y, return_counts=True)
        class_ratio = {
            str(label): float(c) / len(y) for label, c in zip(labels, counts, strict=True)
        }
    return Reference(features=features, class_ratio=class_ratio)


def bin_index(edges: Sequence[float], value: float) -> int:
    """The reference bin a value falls in (same rule as ``feature_reference``)."""
    return int(np.searchsorted(np.asarray(edges), value, side="left"))
