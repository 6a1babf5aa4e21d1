"""Benchmark models: a registry copy with the default logistic model and a RandomForest(200).

Also measures the in-process floor: ``predict`` alone, no HTTP, on 1 and 64 rows.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

from app.registry.store import Registry
from app.serving.onepass import compile_scorer
from app.training.train import fitted_fields

ROOT = Path(__file__).resolve().parent.parent
LOGISTIC = "breast-cancer"
FOREST = "breast-cancer-forest"
SEED = 42


def build_registry(dst: Path) -> Registry:
    """Copy the committed registry and register the forest beside it (alias production)."""
    shutil.copytree(ROOT / "models", dst, ignore=shutil.ignore_patterns(".lock", ".tmp-*"))
    data = load_breast_cancer()
    X = np.asarray(data.data, dtype=np.float64)
    y = np.asarray(data.target)
    names = [str(n) for n in data.feature_names]
    X_train, X_test, y_train, _ = train_test_split(
        X, y, test_size=0.2, random_state=SEED, stratify=y
    )
    forest = RandomForestClassifier(n_estimators=200, random_state=SEED).fit(X_train, y_train)
    registry = Registry(dst)
    fields = fitted_fields(forest, "classification", names, X_train, y_train, X_test[0])
    meta = registry.register(FOREST, forest, fields)
    registry.set_alias(FOREST, "production", meta.version)
    return registry


def example_rows(registry: Registry, name: str, n: int) -> np.ndarray[Any, Any]:
    version = registry.resolve(name, "production")
    example = registry.metadata(name, version).example
    return np.asarray([example] * n, dtype=np.float64)


def predict_floor_ms(registry: Registry, name: str, rows: int, repeat: int = 30) -> float:
    """Median wall time of scikit-learn's ``estimator.predict`` on ``rows`` rows, in ms."""
    estimator = registry.load(name, registry.resolve(name, "production")).estimator
    return _median_ms(estimator.predict, example_rows(registry, name, rows), repeat)


def scorer_floor_ms(registry: Registry, name: str, rows: int, repeat: int = 30) -> float:
    """The same for modelserve's model call (predictions and probabilities in one pass)."""
    estimator = registry.load(name, registry.resolve(name, "production")).estimator
    score = compile_scorer(estimator, with_proba=True)
    return _median_ms(score, example_rows(registry, name, rows), repeat)


def _median_ms(fn: Callable[[Any], Any], X: Any, repeat: int) -> float:
    for _ in range(3):
        fn(X)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(X)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000
