"""One model call per batch: predictions and probabilities from a single pass where it is safe.

``ServedModel`` needs both ``predict`` and ``predict_proba``. Calling both runs the model twice;
for estimators whose ``predict`` *is* ``classes_[argmax(predict_proba)]`` (forests, trees,
logistic regression, also at the end of a Pipeline) the predictions are derived from the
probabilities instead. Forests also skip joblib: with ``n_jobs=1`` scikit-learn sums the
trees one by one through ``Parallel`` and a lock, which costs several times the trees' own
work for a small batch. The loop below adds them in the same order, so the result is the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

Rows = npt.NDArray[np.float64]
Scored = tuple[npt.NDArray[np.generic], npt.NDArray[np.float64] | None]
ScoreFn = Callable[[Rows], Scored]

# predict() of these is classes_[argmax(predict_proba())]; for logistic regression only up to
# rounding, so rows whose top two probabilities (nearly) tie are re-scored with predict().
_ARGMAX_PREDICTORS = (
    RandomForestClassifier,
    ExtraTreesClassifier,
    DecisionTreeClassifier,
    ExtraTreeClassifier,
    LogisticRegression,
)
_FORESTS = (RandomForestClassifier, ExtraTreesClassifier)
_TIE = 1e-9


def compile_scorer(estimator: Any, with_proba: bool) -> ScoreFn:
    """The cheapest correct ``rows -> (predictions, probabilities or None)`` for ``estimator``."""
    if not with_proba:
        return lambda rows: (np.asarray(estimator.predict(rows)), None)
    prefix, final = _split(estimator)
    if not isinstance(final, _ARGMAX_PREDICTORS) or getattr(final, "n_outputs_", 1) != 1:
        return lambda rows: (
            np.asarray(estimator.predict(rows)),
            np.asarray(estimator.predict_proba(rows), dtype=np.float64),
        )
    final_proba: Callable[[Any], npt.NDArray[np.float64]] = final.predict_proba
    if isinstance(final, _FORESTS):
        final_proba = _forest_proba(final)
    classes = np.asarray(final.classes_)

    def score(rows: Rows) -> Scored:
        X = rows if prefix is None else prefix.transform(rows)
        proba = np.asarray(final_proba(X), dtype=np.float64)
        predictions = classes.take(np.argmax(proba, axis=1), axis=0)
        if proba.shape[1] > 1:
            top2 = np.partition(proba, -2, axis=1)[:, -2:]
            ties = np.flatnonzero(top2[:, 1] - top2[:, 0] <= _TIE)
            if len(ties):
                predictions[ties] = np.asarray(estimator.predict(rows[ties]))
        return predictions, proba

    return score


def _split(estimator: Any) -> tuple[Any, Any]:
    """(the transforming steps or None, the final estimator)."""
    if isinstance(estimator, Pipeline) and len(estimator.steps) > 1:
        return estimator[:-1], estimator.steps[-1][1]
    if isinstance(estimator, Pipeline):
        return None, estimator.steps[-1][1]
    return None, estimator


def _forest_proba(forest: Any) -> Callable[[Any], npt.NDArray[np.float64]]:
    trees = list(forest.estimators_)
    n_classes = int(forest.n_classes_)
    n_features = int(forest.n_features_in_)

    def proba(X: Any) -> npt.NDArray[np.float64]:
        with np.errstate(over="ignore"):  # overflow to inf is caught just below
            X32 = np.ascontiguousarray(X, dtype=np.float32)
        if X32.ndim != 2 or X32.shape[1] != n_features or not np.isfinite(X32).all():
            # Let scikit-learn raise its own error (wrong width, or too large for float32).
            return np.asarray(forest.predict_proba(X), dtype=np.float64)
        total = np.zeros((X32.shape[0], n_classes), dtype=np.float64)
        for tree in trees:
            total += tree.predict_proba(X32, check_input=False)
        total /= len(trees)
        return total

    return proba
