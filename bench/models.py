"""Benchmark models: a registry copy with the default logistic model, a RandomForest(200) and
a mixed-type pipeline (one-hot encoded strings + numbers, HistGradientBoosting) fitted on a
pandas DataFrame.

Also measures the in-process floor: ``predict`` alone, no HTTP, on 1 and 64 rows.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from app.config import Settings
from app.registry.metadata import FeatureKind, FeatureSpec
from app.registry.store import Registry
from app.serving.runner import ServedModel
from app.training.background import frame_rows
from app.training.reference import data_fingerprint
from app.training.train import class_labels, environment, estimator_params, fitted_fields

ROOT = Path(__file__).resolve().parent.parent
LOGISTIC = "breast-cancer"
FOREST = "breast-cancer-forest"
MIXED = "mixed"
SEED = 42
MIXED_ROWS = 5000
CITIES = ["amsterdam", "berlin", "lisbon", "madrid", "milan", "oslo", "paris", "prague"]
CITIES += ["vienna", "warsaw"]
PLANS = ["free", "basic", "pro", "enterprise"]
CHANNELS = ["web", "ios", "android"]
STRINGS = ["city", "plan", "channel"]
NUMBERS = ["age", "sessions", "monthly_spend", "tenure_years", "discount"]  # 2 int64, 3 float64


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
    _register_mixed(registry)
    return registry


def mixed_frame(n: int = MIXED_ROWS, seed: int = SEED) -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    """A seeded churn-like table: 3 string columns, 2 int64 and 3 float64, a binary target."""
    rng = np.random.default_rng(seed)
    city = rng.choice(CITIES, n)
    plan = rng.choice(PLANS, n, p=[0.4, 0.3, 0.2, 0.1])
    channel = rng.choice(CHANNELS, n, p=[0.5, 0.3, 0.2])
    frame = pd.DataFrame(
        {
            "city": city.astype(object),
            "plan": plan.astype(object),
            "channel": channel.astype(object),
            "age": rng.integers(18, 80, n).astype(np.int64),
            "sessions": rng.poisson(6, n).astype(np.int64),
            "monthly_spend": np.round(rng.gamma(2.0, 20.0, n), 2),
            "tenure_years": np.round(rng.exponential(3.0, n), 3),
            "discount": np.round(rng.uniform(0, 0.3, n), 3),
        }
    )
    plan_effect = pd.Series(plan).map({"free": 0.8, "basic": 0.2, "pro": -0.4, "enterprise": -1.0})
    logit = (
        plan_effect.to_numpy()
        + 0.5 * (channel == "web")
        + 0.3 * np.isin(city, CITIES[:3])
        - 0.15 * frame["sessions"].to_numpy()
        - 0.25 * frame["tenure_years"].to_numpy()
        + 0.01 * (frame["monthly_spend"].to_numpy() - 40)
        + 2.0 * frame["discount"].to_numpy()
        + 0.01 * (frame["age"].to_numpy() - 45)
        + 0.6
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return frame, y


def mixed_pipeline() -> Pipeline:
    encode = ColumnTransformer(
        [
            ("strings", OneHotEncoder(handle_unknown="ignore"), STRINGS),
            ("numbers", "passthrough", NUMBERS),
        ]
    )
    return Pipeline(
        [("encode", encode), ("model", HistGradientBoostingClassifier(random_state=SEED))]
    )


def _mixed_features(estimator: Any, frame: pd.DataFrame) -> list[FeatureSpec]:
    """Typed specs read off the fitted pipeline and its frame (app.training.schema_infer)."""
    try:
        from app.training.schema_infer import infer_features
    except ImportError:  # written by hand: what infer_features reads off this pipeline
        specs = []
        for name in STRINGS + NUMBERS:
            dtype = frame[name].dtype
            kind: FeatureKind = (
                "string" if name in STRINGS else "integer" if dtype == np.int64 else "number"
            )
            string = kind == "string"
            specs.append(
                FeatureSpec(
                    name=name,
                    dtype="object" if string else str(dtype),  # strings are served as objects
                    kind=kind,
                    # OneHotEncoder(handle_unknown="ignore") maps a missing string to zeros.
                    nullable=string,
                    categories=sorted(map(str, frame[name].unique())) if string else None,
                )
            )
        return specs
    return infer_features(estimator, frame)


def _register_mixed(registry: Registry) -> None:
    frame, y = mixed_frame()
    X_train, X_test, y_train, y_test = train_test_split(
        frame, y, test_size=0.2, random_state=SEED, stratify=y
    )
    pipeline = mixed_pipeline().fit(X_train, y_train)
    features = _mixed_features(pipeline, X_train)
    example = {k: v.item() if hasattr(v, "item") else v for k, v in X_train.iloc[0].items()}
    fields = {
        **environment(),
        "task": "classification",
        "features": [f.model_dump() for f in features],
        "classes": class_labels(pipeline),
        "data_fingerprint": data_fingerprint(X_train[NUMBERS].to_numpy(np.float64), y_train),
        "example": [example[f.name] for f in features],
        "background": frame_rows(X_train[[f.name for f in features]]),  # what :explain traces
        "input_format": "frame",
        "reference": {},
        "metrics": {"accuracy": float(pipeline.score(X_test, y_test))},
        "params": estimator_params(pipeline),
    }
    meta = registry.register(MIXED, pipeline, fields)
    registry.set_alias(MIXED, "production", meta.version)


def example_records(registry: Registry, name: str, n: int) -> list[dict[str, Any]]:
    """``n`` copies of the version's example as objects keyed by feature name (JSON values)."""
    meta = registry.metadata(name, registry.resolve(name, "production"))
    row = dict(zip(meta.feature_names, meta.example, strict=True))
    return [dict(row) for _ in range(n)]


def example_rows(registry: Registry, name: str, n: int) -> np.ndarray[Any, Any]:
    version = registry.resolve(name, "production")
    example = registry.metadata(name, version).example
    return np.asarray([example] * n, dtype=np.float64)


def predict_floor_ms(registry: Registry, name: str, rows: int, repeat: int = 30) -> float:
    """Median wall time of scikit-learn's ``estimator.predict`` on ``rows`` rows, in ms.

    A frame model (the mixed one) is given a plain ``pd.DataFrame`` of the example records.
    """
    artifact = registry.load(name, registry.resolve(name, "production"))
    if artifact.metadata.input_format == "frame":
        X: Any = pd.DataFrame(example_records(registry, name, rows))[
            artifact.metadata.feature_names
        ]
    else:
        X = example_rows(registry, name, rows)
    return median_ms(artifact.estimator.predict, X, repeat)


def scorer_floor_ms(registry: Registry, name: str, rows: int, repeat: int = 30) -> float:
    """The same for modelserve's model call, as the server makes it: the version loaded and
    settled by its load-time probes (compiled trees and transforms where they are exact), on
    the rows its input contract checks (typed rows for a frame model: no DataFrame first)."""
    version = registry.resolve(name, "production")
    with ThreadPoolExecutor(1) as executor:
        served = ServedModel.load(registry, name, version, Settings(), executor)
    if served.metadata.input_format == "frame":
        sent: list[Any] = example_records(registry, name, rows)
    else:
        sent = example_rows(registry, name, rows).tolist()
    checked = served.contract.records(sent, "instances")
    return median_ms(served.score, checked, repeat)


def median_ms(fn: Callable[[Any], Any], X: Any, repeat: int) -> float:
    """The median time of ``fn(X)`` in milliseconds, after a few warm-up calls."""
    for _ in range(3):
        fn(X)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(X)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000
