"""Build the default ``breast-cancer`` model (scaler + logistic regression, fixed seed).

Usage: ``python scripts/build_default_model.py [--registry models] [--no-promote]``.
Registers the next version and points ``production`` at it.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import sklearn
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from app.registry.store import Registry
from app.training.reference import build_reference, data_fingerprint

SEED = 42


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--registry", type=Path, default=Path("models"))
    parser.add_argument("--no-promote", action="store_true")
    args = parser.parse_args()

    data = load_breast_cancer()
    X = np.asarray(data.data, dtype=np.float64)
    y = np.asarray(data.target)
    names = [str(n) for n in data.feature_names]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=SEED, stratify=y
    )
    model = Pipeline(
        [("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=1000, random_state=SEED))]
    )
    model.fit(X_train, y_train)
    pred = model.predict(X_test)
    proba = model.predict_proba(X_test)[:, 1]
    metrics = {
        "accuracy": float(accuracy_score(y_test, pred)),
        "f1": float(f1_score(y_test, pred)),
        "roc_auc": float(roc_auc_score(y_test, proba)),
    }
    registry = Registry(args.registry)
    meta = registry.register(
        "breast-cancer",
        model,
        {
            "python_version": platform.python_version(),
            "sklearn_version": sklearn.__version__,
            "task": "classification",
            "features": [{"name": n, "dtype": "float64"} for n in names],
            "classes": [int(c) for c in model.classes_],
            "metrics": metrics,
            "data_fingerprint": data_fingerprint(X_train, y_train),
            "example": [float(v) for v in X_test[0]],
            "reference": build_reference(X_train, y_train, names, classification=True),
            "params": {"C": 1.0, "max_iter": 1000, "random_state": SEED},
            "spec": {"dataset": "sklearn:breast_cancer", "test_size": 0.2, "seed": SEED},
        },
    )
    if not args.no_promote:
        registry.set_alias("breast-cancer", "production", meta.version)
    print(f"registered breast-cancer version {meta.version} metrics={metrics}")


if __name__ == "__main__":
    main()
