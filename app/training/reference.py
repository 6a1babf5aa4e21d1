"""Facts about the training data stored with each version: fingerprint and reference bins.

Numeric features get quantile bins (``feature_reference``); string features get their most
frequent categories plus one other-bin (``category_reference``). Both are bins of the same
drift counters at serving time (``app.serving.drift``), so one PSI rule covers them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from app.registry.metadata import CategoryReference, FeatureReference, FeatureSpec, Reference

REFERENCE_BINS = 10
# Categories with their own bin per string feature; every other value shares the last bin.
MAX_CATEGORIES = 20


def data_fingerprint(X: npt.NDArray[np.float64], y: npt.NDArray[np.generic]) -> str:
    """sha256 over the training matrix and target, independent of how they were loaded."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    digest.update(np.asarray(y).astype(str).astype("U64").tobytes())
    digest.update(str(X.shape).encode())
    return f"sha256:{digest.hexdigest()}"


def frame_fingerprint(frame: pd.DataFrame, y: npt.NDArray[np.generic]) -> str:
    """sha256 over a typed feature frame (names, dtypes, values) and the target."""
    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(np.asarray(y).astype(str).astype("U64").tobytes())
    digest.update(str(frame.shape).encode())
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


def category_reference(
    values: pd.Series, max_categories: int = MAX_CATEGORIES
) -> CategoryReference:
    """The most frequent categories (ties by value) and the share of each, plus the other-bin.

    Shares are of all rows: values outside the top categories *and missing values* make up
    the last proportion, exactly as serving counts them.
    """
    present = values[values.notna()].astype(str)
    counts = present.value_counts(sort=False)
    ranked = sorted(counts.items(), key=lambda item: (-int(item[1]), str(item[0])))
    top = ranked[:max_categories]
    total = len(values)
    if total == 0:
        return CategoryReference(
            categories=[str(c) for c, _ in top], proportions=[0.0] * (len(top) + 1)
        )
    other = total - sum(int(n) for _, n in top)
    return CategoryReference(
        categories=[str(c) for c, _ in top],
        proportions=[int(n) / total for _, n in top] + [other / total],
    )


def build_categorical_reference(
    frame: pd.DataFrame, string_features: Sequence[str]
) -> dict[str, CategoryReference]:
    """``category_reference`` of each named column of ``frame`` (pure: the frame is unchanged)."""
    return {name: category_reference(frame[name]) for name in string_features}


def _class_ratio(y: npt.NDArray[np.generic], classification: bool) -> dict[str, float]:
    if not classification:
        return {}
    labels, counts = np.unique(y, return_counts=True)
    return {str(label): float(c) / len(y) for label, c in zip(labels, counts, strict=True)}


def build_reference(
    X: npt.NDArray[np.float64],
    y: npt.NDArray[np.generic],
    feature_names: Sequence[str],
    classification: bool,
) -> Reference:
    features = {name: feature_reference(X[:, i]) for i, name in enumerate(feature_names)}
    return Reference(features=features, class_ratio=_class_ratio(y, classification))


def build_frame_reference(
    frame: pd.DataFrame,
    y: npt.NDArray[np.generic],
    features: Sequence[FeatureSpec],
    classification: bool,
) -> Reference:
    """Reference of a typed frame: quantile bins for numbers, integers and booleans (as 0/1;
    missing values left out, as serving leaves them uncounted), categories for strings."""
    numeric: dict[str, FeatureReference] = {}
    for spec in features:
        if spec.kind == "string":
            continue
        values = frame[spec.name].to_numpy(dtype=np.float64, na_value=np.nan)
        values = values[~np.isnan(values)]
        if len(values):  # a column with no value at all has nothing to compare against
            numeric[spec.name] = feature_reference(values)
    # Free text (no categories: a text model's documents) has no categories to count.
    strings = [s.name for s in features if s.kind == "string" and s.categories is not None]
    return Reference(
        features=numeric,
        categorical=build_categorical_reference(frame, strings),
        class_ratio=_class_ratio(y, classification),
    )


def bin_index(edges: Sequence[float], value: float) -> int:
    """The reference bin a value falls in (same rule as ``feature_reference``)."""
    return int(np.searchsorted(np.asarray(edges), value, side="left"))
