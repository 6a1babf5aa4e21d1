"""The single-pass scorer returns exactly what scikit-learn's predict and predict_proba return."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from app.serving import onepass
from app.serving.onepass import compile_scorer


def _data(multiclass: bool) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    data = load_iris() if multiclass else load_breast_cancer()
    return np.asarray(data.data, dtype=np.float64), np.asarray(data.target)


ESTIMATORS = [
    lambda: RandomForestClassifier(n_estimators=25, random_state=0),
    lambda: ExtraTreesClassifier(n_estimators=10, random_state=0),
    lambda: DecisionTreeClassifier(random_state=0),
    lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    lambda: make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=5, random_state=0)),
    lambda: GradientBoostingClassifier(n_estimators=5, random_state=0),  # generic path
    lambda: KNeighborsClassifier(n_neighbors=4),  # generic path
]


@pytest.mark.parametrize("multiclass", [False, True])
@pytest.mark.parametrize("factory", ESTIMATORS)
def test_matches_sklearn_exactly(factory: Any, multiclass: bool) -> None:
    X, y = _data(multiclass)
    estimator = factory().fit(X[::2], y[::2])
    score = compile_scorer(estimator, with_proba=True)
    for rows in (X[1:2], X[1::2]):
        predictions, proba = score(rows)
        np.testing.assert_array_equal(predictions, estimator.predict(rows))
        assert proba is not None
        np.testing.assert_array_equal(proba, estimator.predict_proba(rows))


def test_logistic_tie_is_rescored_with_predict() -> None:
    X = np.array([[-1.0], [1.0]])
    model = LogisticRegression().fit(X, np.array([0, 1]))
    # A row exactly on (or within rounding of) the boundary: predict() decides.
    rows = np.array([[0.0], [1e-18], [-1e-18], [3.0]])
    predictions, _ = compile_scorer(model, with_proba=True)(rows)
    np.testing.assert_array_equal(predictions, model.predict(rows))


def test_forest_refuses_what_sklearn_refuses() -> None:
    X, y = _data(False)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    score = compile_scorer(forest, with_proba=True)
    too_big = X[:1].copy()
    too_big[0, 0] = 1e300  # finite in float64, infinite in the float32 the trees use
    with pytest.raises(ValueError):
        score(too_big)
    with pytest.raises(ValueError):
        score(X[:1, :5])


def test_without_proba_only_predicts() -> None:
    X, y = _data(False)
    tree = DecisionTreeClassifier(random_state=0).fit(X, y)
    predictions, proba = compile_scorer(tree, with_proba=False)(X[:3])
    assert proba is None
    np.testing.assert_array_equal(predictions, tree.predict(X[:3]))


@pytest.mark.parametrize("factory", [ESTIMATORS[0], ESTIMATORS[3], ESTIMATORS[4]])
def test_fast_paths_do_not_call_sklearn_predict_proba(factory: Any) -> None:
    X, y = _data(False)
    estimator = factory().fit(X, y)
    expected = estimator.predict_proba(X[:20])
    score = compile_scorer(estimator, with_proba=True)

    def unused(_: Any) -> Any:
        raise AssertionError("scikit-learn's predict_proba was called")

    estimator.predict_proba = unused
    _, proba = score(X[:20])
    np.testing.assert_array_equal(proba, expected)


def test_a_fast_path_that_differs_from_sklearn_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _data(False)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)

    def off_by_a_little(prefix: Any, final: Any) -> Any:
        return lambda rows: model.predict_proba(rows) + 1e-15

    monkeypatch.setattr(onepass, "_linear_proba", off_by_a_little)
    _, proba = compile_scorer(model, with_proba=True)(X[:5])
    np.testing.assert_array_equal(proba, model.predict_proba(X[:5]))
