"""Small real models with the feature counts of the KServe and MLServer docs' examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from app.registry.store import Registry
from app.training.train import fitted_fields

# KServe "sklearn v2" docs: a 2-row FP32 tensor of 4 iris features, nested data.
KSERVE_REQUEST = {
    "inputs": [
        {
            "name": "input-0",
            "shape": [2, 4],
            "datatype": "FP32",
            "data": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]],
        }
    ]
}
# MLServer sklearn runtime docs: a 2-row INT32 tensor of 2 features, flat data, asking for
# predict_proba only.
MLSERVER_REQUEST = {
    "inputs": [{"name": "my-input", "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]}],
    "outputs": [{"name": "predict_proba"}],
}


def register_iris(root: Path, name: str, columns: list[int], c: float = 1.0) -> str:
    """Train logistic regression on the given iris columns; register and promote it."""
    data = load_iris()
    X = np.asarray(data.data[:, columns], dtype=np.float64)
    y = np.asarray(data.target)
    names = [str(data.feature_names[i]) for i in columns]
    model = LogisticRegression(C=c, max_iter=1000, random_state=0).fit(X, y)
    registry = Registry(root)
    fields = fitted_fields(model, "classification", names, X, y, X[0])
    fields["metrics"] = {"accuracy": float(model.score(X, y))}
    meta = registry.register(name, model, fields)
    registry.set_alias(name, "production", meta.version)
    return meta.version
