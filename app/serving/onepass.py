"""One model call per batch: predictions and probabilities from a single pass where it is safe.

``ServedModel`` needs both ``predict`` and ``predict_proba``. Calling both runs the model twice;
for estimators whose ``predict`` *is* ``classes_[argmax(predict_proba)]`` (forests, trees,
logistic regression, also at the end of a Pipeline) the predictions are derived from the
probabilities instead. Forests also skip joblib: with ``n_jobs=1`` scikit-learn sums the
trees one by one through ``Parallel`` and a lock, which costs several times the trees' own
work for a small batch. The loop below adds them in the same order, so the result is the same.

Tree ensembles go further when their load-time probe allows: ``treescore`` walks all their
trees as arrays and ``treeprobe`` proves it exact first; the scorer's name (``Scorer.name``)
says which path serves a version. A pipeline's scorer also scores its final step alone
(``Scorer.tail``), so a compiled transform (``prefixprobe``) can hand it the matrix directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.special import expit
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier
from sklearn.utils.extmath import softmax

from app.serving import treescore
from app.serving.contract import ModelInput, Rows, TypedRows, model_input
from app.serving.treeprobe import verify

log = logging.getLogger(__name__)

Scored = tuple[npt.NDArray[np.generic], npt.NDArray[np.float64] | None]
ScoreFn = Callable[[ModelInput], Scored]
TailFn = Callable[[npt.NDArray[np.float64]], Scored | None]  # None: the whole pipeline's call
TypedFn = Callable[[TypedRows], Scored | None]
ProbaFn = Callable[[ModelInput], npt.NDArray[np.float64]]

# predict() of these is classes_[argmax(predict_proba())]; for logistic regression only up to
# rounding, so rows whose top two probabilities (nearly) tie are re-scored with predict().
_ARGMAX_PREDICTORS = (
    RandomForestClassifier,
    ExtraTreesClassifier,
    DecisionTreeClassifier,
    ExtraTreeClassifier,
    LogisticRegression,
    HistGradientBoostingClassifier,  # probabilities are a monotone map of the decision
    GradientBoostingClassifier,
)
_FORESTS = (RandomForestClassifier, ExtraTreesClassifier)
_TIE = 1e-9
COMPILED = "compiled-trees"
LINEAR = "one-pass-linear"
SKLEARN = "scikit-learn"


@dataclass(frozen=True)
class Scorer:
    """A version's model call, and the names ``GET /models/{name}`` gives it."""

    fn: ScoreFn
    name: str
    refused: str = ""  # why a tree ensemble is not served by its compiled scorer
    tail: TailFn | None = None  # a pipeline's final step on its steps' output matrix
    typed: TypedFn | None = None  # typed rows without a DataFrame (a compiled transform)
    transform: str | None = None  # who runs a pipeline's transforming steps (None: none)

    def __call__(self, rows: Rows) -> Scored:
        if self.typed is not None and isinstance(rows, TypedRows):
            scored = self.typed(rows)
            if scored is not None:
                return scored
        return self.fn(model_input(rows))


def serves_probabilities(estimator: Any, is_classifier: bool) -> bool:
    """A single-output classifier with ``predict_proba``: multi-output classifiers give one
    probability table per output, which is not served."""
    single_output = not isinstance(getattr(estimator, "classes_", None), list)
    return is_classifier and hasattr(estimator, "predict_proba") and single_output


def compile_scorer(
    estimator: Any,
    with_proba: bool,
    *,
    fast: bool = True,
    derive: bool = True,
    trees: bool = True,
) -> Scorer:
    """The cheapest correct ``rows -> (predictions, probabilities or None)`` for ``estimator``.

    A tree ensemble (alone or ending a Pipeline) gets its compiled scorer (``treescore``) if
    the load-time probe proves it exact (``trees=False``: never). Otherwise ``fast=False``
    (typed rows: DataFrames, object arrays) uses the model's own ``predict_proba``, still
    deriving predictions from it where that is exact (one pass through a pipeline's encoders
    instead of two); ``derive=False`` calls both methods.
    """
    own = _own_scorer(estimator, with_proba, fast, derive)
    prefix, final = _split(estimator)
    if prefix is not None:
        final_own = _own_scorer(final, with_proba, False, derive)  # the matrix as it is
        transform = LINEAR if own.name == LINEAR else SKLEARN
        own = replace(own, tail=final_own.fn, transform=transform)
    if not (trees and derive and treescore.compiles(final)):
        return own
    score, tail, refused = _tree_scorer(prefix, final, with_proba, own)
    if score is None:
        return replace(own, refused=refused)
    return replace(own, fn=score, name=COMPILED, tail=tail if prefix is not None else None)


def _tree_scorer(
    prefix: Any, final: Any, with_proba: bool, own: Scorer
) -> tuple[ScoreFn | None, TailFn, str]:
    """The compiled scorer if the probe proves it exact, else None and why not. A call it
    cannot take goes to ``own``, scikit-learn's path, with the rows as sent."""
    try:
        compiled = treescore.compile_ensemble(final, with_proba)  # the tests' seam
        refused = verify(compiled)
    except treescore.NotCompiledError as exc:
        return None, _nothing, str(exc)
    except Exception as exc:  # an attribute a release renamed, say: scikit-learn serves it
        return None, _nothing, f"it could not be compiled ({type(exc).__name__}: {exc})"
    if refused:
        return None, _nothing, refused

    def tail(matrix: npt.NDArray[np.float64]) -> Scored | None:
        prepared = compiled.prepare(matrix)
        return None if prepared is None else compiled.score(prepared)

    def score(rows: ModelInput) -> Scored:
        matrix = compiled.prepare(rows if prefix is None else prefix.transform(rows))
        scored = None if matrix is None else compiled.score(matrix)
        return own.fn(rows) if scored is None else scored

    return score, tail, ""


def _nothing(matrix: npt.NDArray[np.float64]) -> Scored | None:
    return None


def _own_scorer(estimator: Any, with_proba: bool, fast: bool, derive: bool) -> Scorer:
    """Today's path: scikit-learn's own methods, or a one-pass scorer over them."""
    if not with_proba:
        return Scorer(lambda rows: (np.asarray(estimator.predict(rows)), None), SKLEARN)
    prefix, final = _split(estimator)
    if (
        not derive
        or not isinstance(final, _ARGMAX_PREDICTORS)
        or getattr(final, "n_outputs_", 1) != 1
    ):
        return Scorer(
            lambda rows: (
                np.asarray(estimator.predict(rows)),
                np.asarray(estimator.predict_proba(rows), dtype=np.float64),
            ),
            SKLEARN,
        )
    name = SKLEARN
    if fast:
        proba_fn, name = _fast_proba(estimator, prefix, final)
    else:
        proba_fn = lambda rows: np.asarray(estimator.predict_proba(rows), dtype=np.float64)  # noqa: E731
    classes = np.asarray(final.classes_)

    def score(rows: ModelInput) -> Scored:
        proba = proba_fn(rows)
        predictions = classes.take(np.argmax(proba, axis=1), axis=0)
        if proba.shape[1] > 1:
            top2 = np.partition(proba, -2, axis=1)[:, -2:]
            ties = np.flatnonzero(top2[:, 1] - top2[:, 0] <= _TIE)
            if len(ties):
                subset = rows.iloc[ties] if isinstance(rows, pd.DataFrame) else rows[ties]
                predictions[ties] = np.asarray(estimator.predict(subset))
        return predictions, proba

    return Scorer(score, name)


def _fast_proba(estimator: Any, prefix: Any, final: Any) -> tuple[ProbaFn, str]:
    """A faster ``predict_proba`` if one applies and reproduces scikit-learn's numbers exactly,
    and the scorer's name (a forest's trees summed here are still scikit-learn's calls).

    The check runs once, at load, on a few synthetic rows: should a scikit-learn release
    compute differently, the model silently keeps scikit-learn's own path.
    """

    def sklearn_proba(rows: ModelInput) -> npt.NDArray[np.float64]:
        return np.asarray(estimator.predict_proba(rows), dtype=np.float64)

    fast: ProbaFn | None = None
    name = SKLEARN
    if isinstance(final, _FORESTS):
        trees = _forest_proba(final)
        fast = trees if prefix is None else (lambda rows: trees(prefix.transform(rows)))
    elif isinstance(final, LogisticRegression):
        fast, name = _linear_proba(prefix, final), LINEAR
    if fast is None:
        return sklearn_proba, SKLEARN
    width = int(final.n_features_in_) if prefix is None else int(prefix.n_features_in_)
    probe = np.random.default_rng(0).normal(size=(16, width))
    if isinstance(prefix, Pipeline | StandardScaler):
        scaler = prefix[0] if isinstance(prefix, Pipeline) else prefix
        probe = probe * getattr(scaler, "scale_", 1.0) + getattr(scaler, "mean_", 0.0)
    try:
        exact = np.array_equal(fast(probe), sklearn_proba(probe))
    except Exception:
        exact = False
    if not exact:
        log.warning("fast predict_proba of %s differs from scikit-learn's; not used", final)
        return sklearn_proba, SKLEARN
    return fast, name


def _linear_proba(prefix: Any, model: Any) -> ProbaFn | None:
    """StandardScaler steps + LogisticRegression, as the plain arithmetic scikit-learn does.

    scikit-learn spends ~0.2 ms per call validating its input; ours is a finite float64
    matrix already (the input contract), and the arithmetic itself takes a few microseconds.
    """
    steps = [] if prefix is None else [s for _, s in prefix.steps]
    if not all(type(s) is StandardScaler for s in steps) or type(model) is not LogisticRegression:
        return None
    shifts = [(s.mean_ if s.with_mean else None, s.scale_ if s.with_std else None) for s in steps]
    coef_T = model.coef_.T
    intercept = model.intercept_
    binary = len(model.classes_) <= 2
    width = int(model.n_features_in_) if prefix is None else int(prefix.n_features_in_)

    def proba(rows: ModelInput) -> npt.NDArray[np.float64]:
        if rows.ndim != 2 or rows.shape[1] != width:
            return np.asarray(model.predict_proba(rows), dtype=np.float64)  # its own error
        X = np.array(rows, dtype=np.float64)
        for mean, scale in shifts:
            if mean is not None:
                X -= mean
            if scale is not None:
                X /= scale
        scores = X @ coef_T + intercept
        if binary:
            prob = expit(scores.reshape(-1), out=scores.reshape(-1))
            return np.stack([1 - prob, prob], axis=1)
        return np.asarray(softmax(scores, copy=False), dtype=np.float64)

    return proba


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
