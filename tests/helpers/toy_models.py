"""A real, picklable scikit-learn model that is deliberately slow and can be made to fail.

``SlowModel`` wraps a fitted decision tree on iris (trees score each row on their own, so the
server may merge requests for it: ``app/serving/exactness.py``); every call sleeps ``delay_s`` (the
sleep releases the GIL like a native model would) and any row whose first value is ``POISON``
makes the whole call raise, as a model rejecting one bad row of a merged batch would. Made with
``only_first_value=SLOW``, only calls holding a row whose first value is ``SLOW`` sleep: the
server loads it at full speed (its smoke and exactness probes score other rows), and the
requests a test sends with that value are the slow calls.
Server subprocesses import it from ``tests.helpers.toy_models`` (run them with
``PYTHONPATH`` = the repository root).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

from app.registry.store import Registry
from app.training.train import fitted_fields
from tests.helpers.support import ROOT

POISON = -999.0
SLOW = 77.0  # no iris value and outside the range the load probes draw from
TOY = "toy"


class SlowModel(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    def __init__(self, delay_s: float = 0.0, only_first_value: float | None = None) -> None:
        self.delay_s = delay_s
        self.only_first_value = only_first_value

    def fit(self, X: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> SlowModel:
        self.inner_ = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y)
        self.classes_ = self.inner_.classes_
        return self

    def _check(self, X: npt.NDArray[np.float64]) -> None:
        first = np.asarray(X)[:, 0]
        if self.only_first_value is None or np.any(first == self.only_first_value):
            time.sleep(self.delay_s)
        if np.any(first == POISON):
            raise ValueError("poisoned row")

    def predict(self, X: npt.NDArray[np.float64]) -> Any:
        self._check(X)
        return self.inner_.predict(X)

    def predict_proba(self, X: npt.NDArray[np.float64]) -> Any:
        self._check(X)
        return self.inner_.predict_proba(X)


def iris() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], list[str]]:
    data = load_iris()
    return (
        np.asarray(data.data, dtype=np.float64),
        np.asarray(data.target),
        [str(n) for n in data.feature_names],
    )


def toy_registry(root: Path, delay_s: float, only_first_value: float | None = None) -> Registry:
    """A registry holding only ``toy`` (a SlowModel), version 1 at alias production."""
    X, y, names = iris()
    model = SlowModel(delay_s, only_first_value).fit(X, y)
    registry = Registry(root)
    meta = registry.register(TOY, model, fitted_fields(model, "classification", names, X, y, X[0]))
    registry.set_alias(TOY, "production", meta.version)
    return registry


def toy_env(**settings: str) -> dict[str, str]:
    """Server environment serving ``toy`` by default, with the test modules importable."""
    return {
        "PYTHONPATH": str(ROOT),
        "MODELSERVE_MODEL": TOY,
        "MODELSERVE_POLL_INTERVAL_S": "0",
        **{f"MODELSERVE_{k.upper()}": v for k, v in settings.items()},
    }


class PickyModel(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A fitted classifier that raises on every row whose first value is above ``limit``: a
    version that fails on some rows (and still scores its own example)."""

    def __init__(self, inner: Any = None, limit: float = 0.0) -> None:
        self.inner = inner
        self.limit = limit

    def fit(self, X: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> PickyModel:
        self.classes_ = self.inner.classes_
        return self

    def _check(self, X: npt.NDArray[np.float64]) -> None:
        if np.any(np.asarray(X, dtype=float)[:, 0] > self.limit):
            raise ValueError(f"first feature above {self.limit}")

    def predict(self, X: npt.NDArray[np.float64]) -> Any:
        self._check(X)
        return self.inner.predict(X)

    def predict_proba(self, X: npt.NDArray[np.float64]) -> Any:
        self._check(X)
        return self.inner.predict_proba(X)
