"""Compiled scorers for tree ensembles, with scikit-learn's arithmetic to the last bit.

Random forests and extra trees (classifier, regressor), gradient boosting and histogram
gradient boosting (classifier, regressor), alone or at the end of a Pipeline, are walked as
flat arrays (``treearrays``) for all rows and trees at once instead of one scikit-learn call
per tree. What each tree adds is summed in scikit-learn's order (a forest: 0, then each tree's
output in turn, divided by the number of trees once; boosting: the initial raw score, then
each stage's learning-rate-scaled leaf), and the raw scores go through the model's own link
(``_loss.predict_proba``, ``_loss.link.inverse``), so the result is what scikit-learn returns.

A compiled scorer is only used after ``treeprobe.verify`` finds it exact on a row for every
leaf of every tree; a call it cannot take (NaN the model refuses, an infinity, a wrong width,
sparse input) goes to scikit-learn, whose own answer or error it gets.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.sparse import issparse
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.utils import get_tags
from sklearn.utils.validation import validate_data

from app.serving.treearrays import Floats, TreeArrays, from_hist_predictors, from_sklearn_trees

Scored = tuple[npt.NDArray[Any], Floats | None]
Finish = Callable[[Floats], Scored]
FORESTS = (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier, ExtraTreesRegressor)
BOOSTING = (GradientBoostingClassifier, GradientBoostingRegressor)
HISTOGRAM = (HistGradientBoostingClassifier, HistGradientBoostingRegressor)
ENSEMBLES = FORESTS + BOOSTING + HISTOGRAM


class NotCompiledError(Exception):
    """The ensemble has a form the compiled scorer does not reproduce (the message says which)."""


@dataclass(frozen=True)
class CompiledEnsemble:
    arrays: TreeArrays
    table: Floats  # per node, what its leaf adds: (nodes, outputs)
    columns: int  # raw score columns; tree t adds to column t % columns (one vector: forests)
    start: Floats  # the raw scores before the first tree
    divide: int  # forests divide the sum by their number of trees; 0: no division
    finish: Finish  # raw scores -> (predictions, probabilities or None), the model's own way
    prepare: Callable[[Any], Floats | None]  # a model input -> the matrix the trees read
    per_tree: Callable[[int, Floats], Floats]  # scikit-learn's own output of one tree
    reference: Any  # what the probe compares with, on the matrix the trees read
    float32: bool  # the trees read float32 (sklearn.tree) rather than float64
    allow_nan: bool
    probabilities: bool  # finish gives probabilities (a classifier served with them)

    def score(self, X: Floats) -> Scored | None:
        """Predictions and probabilities for a prepared matrix, or None: scikit-learn's call."""
        walkable = self.arrays.walkable(X)
        if walkable is None:
            return None
        return self.combine(self.arrays.leaves(walkable))

    def combine(self, leaves: npt.NDArray[np.intp]) -> Scored:
        n = leaves.shape[0]
        stages = self.arrays.n_trees * self.table.shape[1] // self.columns
        values = self.table.take(leaves, axis=0).reshape(n, stages, self.columns)
        stack = np.empty((stages + 1, n, self.columns), dtype=np.float64)
        stack[0] = self.start
        stack[1:] = values.transpose(1, 0, 2)
        # add.accumulate adds strictly in order (np.sum would sum pairwise).
        np.add.accumulate(stack, axis=0, out=stack)
        total = stack[-1]
        if self.divide:
            total = total / self.divide
        return self.finish(total)


def compiles(final: Any) -> bool:
    """Whether ``final`` is a family the compiled scorer knows (subclasses are not)."""
    return type(final) in ENSEMBLES


def compile_ensemble(final: Any, with_proba: bool) -> CompiledEnsemble:
    """The compiled form of a fitted ensemble, not yet probed; NotCompiledError says why not."""
    if getattr(final, "n_outputs_", 1) != 1:
        raise NotCompiledError("multi-output models are not compiled")
    width = int(final.n_features_in_)
    if isinstance(final, FORESTS):
        return _forest(final, width, with_proba)
    if isinstance(final, BOOSTING):
        return _boosting(final, width, with_proba)
    return _histogram(final, width, with_proba)


def _forest(model: Any, width: int, with_proba: bool) -> CompiledEnsemble:
    trees = list(model.estimators_)
    classifier = isinstance(model, RandomForestClassifier | ExtraTreesClassifier)
    outputs = int(model.n_classes_) if classifier else 1
    table = np.concatenate([np.asarray(t.tree_.value)[:, 0, :outputs] for t in trees])
    allow_nan = bool(get_tags(trees[0]).input_tags.allow_nan)
    finite = "allow-nan" if allow_nan else True

    def per_tree(t: int, X: Floats) -> Floats:
        X32 = X.astype(np.float32)
        if classifier:
            return np.asarray(trees[t].predict_proba(X32, check_input=False))
        return np.asarray(trees[t].predict(X32, check_input=False)).reshape(-1, 1)

    if classifier:
        classes = np.asarray(model.classes_)

        def finish(total: Floats) -> Scored:
            return classes.take(np.argmax(total, axis=1), axis=0), total if with_proba else None

    else:

        def finish(total: Floats) -> Scored:
            return total[:, 0], None

    return CompiledEnsemble(
        arrays=from_sklearn_trees([t.tree_ for t in trees], width),
        table=np.ascontiguousarray(table, dtype=np.float64),
        columns=outputs,
        start=np.zeros(outputs),
        divide=len(trees),
        finish=finish,
        prepare=_float32_input(model, width, allow_nan, finite),
        per_tree=per_tree,
        reference=model,
        float32=True,
        allow_nan=allow_nan,
        probabilities=classifier and with_proba,
    )


def _boosting(model: Any, width: int, with_proba: bool) -> CompiledEnsemble:
    if not (isinstance(model.init_, DummyClassifier | DummyRegressor) or model.init_ == "zero"):
        raise NotCompiledError(f"its init estimator {type(model.init_).__name__} is not a constant")
    grid = model.estimators_  # (stages, columns) of DecisionTreeRegressor
    columns = int(grid.shape[1])
    trees = [tree for stage in grid for tree in stage]
    rate = float(model.learning_rate)
    table = rate * np.concatenate([np.asarray(t.tree_.value)[:, 0, :1] for t in trees])
    start = np.asarray(model._raw_predict_init(np.zeros((1, width), np.float32)))[0]

    def per_tree(t: int, X: Floats) -> Floats:
        leaf = np.asarray(trees[t].predict(X.astype(np.float32), check_input=False))
        return (rate * leaf).reshape(-1, 1)

    if isinstance(model, GradientBoostingClassifier):
        classes = np.asarray(model.classes_)

        def finish(total: Floats) -> Scored:
            raw = total.ravel() if columns == 1 else total  # decision_function's shape
            encoded = (raw >= 0).astype(int) if raw.ndim == 1 else np.argmax(raw, axis=1)
            proba = np.asarray(model._loss.predict_proba(raw)) if with_proba else None
            return classes[encoded], proba

    else:

        def finish(total: Floats) -> Scored:
            return total.ravel(), None

    return CompiledEnsemble(
        arrays=from_sklearn_trees([t.tree_ for t in trees], width),
        table=np.ascontiguousarray(table, dtype=np.float64),
        columns=columns,
        start=np.asarray(start, dtype=np.float64),
        divide=0,
        finish=finish,
        prepare=_float32_input(model, width, False, True),
        per_tree=per_tree,
        reference=model,
        float32=True,
        allow_nan=False,
        probabilities=isinstance(model, GradientBoostingClassifier) and with_proba,
    )


def _histogram(model: Any, width: int, with_proba: bool) -> CompiledEnsemble:
    columns = int(model.n_trees_per_iteration_)
    predictors = [p for iteration in model._predictors for p in iteration]
    known, feature_map = model._bin_mapper.make_known_categories_bitsets()
    table = np.concatenate([p.nodes["value"] for p in predictors]).reshape(-1, 1)
    start = (np.zeros((1, columns)) + model._baseline_prediction)[0]
    preprocessor = model._preprocessor
    # The probe compares on the matrix the trees read: for a model that encodes its own
    # categories first, that is the encoder's output, which a copy without it reads directly.
    reference = model
    if preprocessor is not None:
        reference = copy.copy(model)
        reference._preprocessor = None

    def per_tree(t: int, X: Floats) -> Floats:
        return np.asarray(predictors[t].predict(X, known, feature_map, 1)).reshape(-1, 1)

    if isinstance(model, HistGradientBoostingClassifier):
        classes = np.asarray(model.classes_)

        def finish(total: Floats) -> Scored:
            raw = np.asfortranarray(total)  # _raw_predict's layout
            encoded = (raw.ravel() > 0).astype(int) if columns == 1 else np.argmax(raw, axis=1)
            proba = np.asarray(model._loss.predict_proba(raw)) if with_proba else None
            return classes[encoded], proba

    else:

        def finish(total: Floats) -> Scored:
            return np.asarray(model._loss.link.inverse(total.ravel())), None

    def prepare(X: Any) -> Floats | None:
        if preprocessor is None and _numeric(X):
            if X.ndim != 2 or X.shape[1] != width:
                return None
            matrix: Floats = X.astype(np.float64)
        elif issparse(X):
            return None
        else:
            matrix = np.asarray(model._preprocess_X(X, reset=False), dtype=np.float64)
        return matrix if _finite_or_nan(matrix, True) else None

    return CompiledEnsemble(
        arrays=from_hist_predictors(predictors, width, known, feature_map),
        table=np.ascontiguousarray(table, dtype=np.float64),
        columns=columns,
        start=np.asarray(start, dtype=np.float64),
        divide=0,
        finish=finish,
        prepare=prepare,
        per_tree=per_tree,
        reference=reference,
        float32=False,
        allow_nan=True,
        probabilities=isinstance(model, HistGradientBoostingClassifier) and with_proba,
    )


def _float32_input(
    model: Any, width: int, allow_nan: bool, finite: bool | str
) -> Callable[[Any], Floats | None]:
    """sklearn.tree reads float32: a numeric matrix is cast as scikit-learn casts it; anything
    else (a DataFrame) goes through the model's own validation, with its own errors."""

    def prepare(X: Any) -> Floats | None:
        if _numeric(X):
            if X.ndim != 2 or X.shape[1] != width:
                return None
            with np.errstate(over="ignore"):  # too large for float32: inf, refused below
                X32 = X.astype(np.float32)
        elif issparse(X):
            return None
        else:
            X32 = validate_data(
                model,
                X,
                dtype=np.float32,
                accept_sparse="csr",
                reset=False,
                ensure_all_finite=finite,
            )
            if not isinstance(X32, np.ndarray):
                return None
        matrix = X32.astype(np.float64)
        return matrix if _finite_or_nan(matrix, allow_nan) else None

    return prepare


def _numeric(X: Any) -> bool:
    return isinstance(X, np.ndarray) and X.dtype.kind in "biuf"


def _finite_or_nan(X: Floats, allow_nan: bool) -> bool:
    """No infinity, and NaN only where the model takes it."""
    if np.isfinite(X).all():
        return True
    return allow_nan and not np.isinf(X).any()
