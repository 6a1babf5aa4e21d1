"""Helpers for the monitoring tests: a real regressor in a registry copy, metric scraping."""

from __future__ import annotations

import sys

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

from app.registry.store import Registry
from app.training.reference import build_reference, data_fingerprint


def register_regressor(registry: Registry, name: str = "diabetes") -> str:
    """Train a small ridge regressor on scikit-learn's diabetes data, alias it production."""
    import sklearn

    data = load_diabetes()
    X, y = np.asarray(data.data, dtype=np.float64), np.asarray(data.target)
    names = list(data.feature_names)
    meta = registry.register(
        name,
        Ridge(alpha=1.0).fit(X, y),
        {
            "python_version": ".".join(map(str, sys.version_info[:3])),
            "sklearn_version": sklearn.__version__,
            "task": "regression",
            "features": [{"name": n} for n in names],
            "data_fingerprint": data_fingerprint(X, y),
            "example": X[0].tolist(),
            "reference": build_reference(X, y, names, classification=False).model_dump(),
        },
    )
    registry.set_alias(name, "production", meta.version)
    return meta.version


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
