"""Compiled tree ensembles: used when the load-time probe proves them exact, and then exactly
what scikit-learn returns; refused, with scikit-learn serving, when one leaf differs."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import (
    load_breast_cancer,
    load_iris,
    load_wine,
    make_classification,
    make_regression,
)
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
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from app.serving import treeprobe, treescore
from app.serving.onepass import COMPILED, SKLEARN, compile_scorer
from app.serving.treeboxes import leaf_rows
from app.serving.treeprobe import verify
from app.serving.treescore import compile_ensemble
from tests.helpers.trees import one_leaf_off

Data = tuple[Any, np.ndarray[Any, Any]]


@functools.cache
def numeric(name: str) -> Data:
    if name == "cancer":
        X, y = load_breast_cancer(return_X_y=True)
    elif name == "iris":
        X, y = load_iris(return_X_y=True)
    elif name == "wine":
        X, y = load_wine(return_X_y=True)
    elif name == "regression":
        X, y = make_regression(n_samples=400, n_features=6, noise=5.0, random_state=0)
    else:  # "nan" and "nan-regression": about 12 % of the cells missing
        X, y = make_classification(n_samples=500, n_features=8, random_state=1)
        if name == "nan-regression":
            y = X[:, 0] * 3.0 + np.nan_to_num(X[:, 1])
        X[np.random.default_rng(0).random(X.shape) < 0.12] = np.nan
    return np.asarray(X, dtype=np.float64), np.asarray(y)


@functools.cache
def frame(name: str) -> Data:
    """Strings and numbers (``mixed``) or integer-coded categories (``shops``)."""
    rng = np.random.default_rng(3)
    n = 500
    if name == "mixed":
        city = rng.choice(["paris", "lyon", "nice", "lille"], n).astype(object)
        spend = rng.gamma(2.0, 20.0, n)
        age = rng.integers(18, 80, n)
        X = pd.DataFrame({"city": city, "spend": spend, "age": age})
        y = ((city == "paris") + spend / 40 + age / 60 + rng.normal(0, 0.5, n) > 2).astype(int)
        return X, y
    shop = rng.integers(0, 6, n)
    amount = rng.gamma(2.0, 30.0, n)
    colour = pd.Categorical(rng.choice(["red", "green", "blue"], n))
    X = pd.DataFrame({"shop": shop, "amount": amount, "colour": colour})
    y = (np.isin(shop, [1, 4]) + amount / 60 + (colour == "red") > 1.6).astype(int)
    return X, y


def _encoded(model: Any) -> Pipeline:
    columns = ColumnTransformer(
        [("city", OneHotEncoder(handle_unknown="ignore"), ["city"])], remainder="passthrough"
    )
    return Pipeline([("columns", columns), ("model", model)])


Case = tuple[Callable[[], Any], Callable[[], Data]]
CASES: dict[str, Case] = {
    "rf": (lambda: RandomForestClassifier(30, random_state=0), lambda: numeric("cancer")),
    "rf-multiclass": (lambda: RandomForestClassifier(20, random_state=0), lambda: numeric("iris")),
    "rf-nan": (lambda: RandomForestClassifier(20, random_state=0), lambda: numeric("nan")),
    "rf-regressor": (
        lambda: RandomForestRegressor(20, random_state=0),
        lambda: numeric("regression"),
    ),
    "et": (lambda: ExtraTreesClassifier(20, random_state=0), lambda: numeric("wine")),
    "et-nan": (lambda: ExtraTreesClassifier(20, random_state=0), lambda: numeric("nan")),
    "et-regressor": (
        lambda: ExtraTreesRegressor(20, random_state=0),
        lambda: numeric("regression"),
    ),
    "gb": (lambda: GradientBoostingClassifier(n_estimators=20), lambda: numeric("cancer")),
    "gb-multiclass": (lambda: GradientBoostingClassifier(n_estimators=20), lambda: numeric("iris")),
    "gb-regressor": (
        lambda: GradientBoostingRegressor(n_estimators=20, random_state=0),
        lambda: numeric("regression"),
    ),
    "hgb": (lambda: HistGradientBoostingClassifier(max_iter=20), lambda: numeric("cancer")),
    "hgb-multiclass": (
        lambda: HistGradientBoostingClassifier(max_iter=20),
        lambda: numeric("wine"),
    ),
    "hgb-nan": (lambda: HistGradientBoostingClassifier(max_iter=20), lambda: numeric("nan")),
    "hgb-regressor": (
        lambda: HistGradientBoostingRegressor(max_iter=20),
        lambda: numeric("nan-regression"),
    ),
    "hgb-poisson": (
        lambda: HistGradientBoostingRegressor(loss="poisson", max_iter=20),
        lambda: (numeric("regression")[0], np.abs(numeric("regression")[1])),
    ),
    "hgb-categorical": (
        lambda: HistGradientBoostingClassifier(
            max_iter=20, categorical_features=["shop", "colour"], random_state=0
        ),
        lambda: frame("shops"),
    ),
    "scaled-rf": (
        lambda: make_pipeline(StandardScaler(), RandomForestClassifier(20, random_state=0)),
        lambda: numeric("cancer"),
    ),
    "scaled-gb-regressor": (
        lambda: make_pipeline(StandardScaler(), GradientBoostingRegressor(n_estimators=20)),
        lambda: numeric("regression"),
    ),
    "encoded-hgb": (
        lambda: _encoded(HistGradientBoostingClassifier(max_iter=20)),
        lambda: frame("mixed"),
    ),
    "encoded-et": (
        lambda: _encoded(ExtraTreesClassifier(20, random_state=0)),
        lambda: frame("mixed"),
    ),
    "encoded-hgb-regressor": (
        lambda: _encoded(HistGradientBoostingRegressor(max_iter=20)),
        lambda: (frame("mixed")[0], frame("mixed")[0]["spend"].to_numpy() * 2.0),
    ),
}


def _final(model: Any) -> Any:
    return model.steps[-1][1] if isinstance(model, Pipeline) else model


def _fitted(case: str) -> tuple[Any, Any, Any, bool]:
    """(model fitted on even rows, the odd rows, the scorer's fast flag, classifier)."""
    make, data = CASES[case]
    X, y = data()
    if isinstance(X, pd.DataFrame):
        train, test = X.iloc[::2], X.iloc[1::2].reset_index(drop=True)
    else:
        train, test = X[::2], X[1::2]
    model = make().fit(train, y[::2])
    return model, test, not isinstance(X, pd.DataFrame), hasattr(_final(model), "classes_")


def _rows(X: Any, start: int, stop: int) -> Any:
    return X.iloc[start:stop] if isinstance(X, pd.DataFrame) else X[start:stop]


def _assert_bits(got: Any, expected: Any) -> None:
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    if got.dtype.kind == "f":
        assert got.tobytes() == expected.tobytes()
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_scorer_serves_and_is_exact(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model, X, fast, classifier = _fitted(case)
    # Trees score each row on its own: scikit-learn's answer for all rows is each row's.
    own_predictions = model.predict(X)
    own_proba = model.predict_proba(X) if classifier else None
    score = compile_scorer(model, classifier, fast=fast)
    assert score.name == COMPILED, score.refused

    def not_called(*_: Any, **__: Any) -> Any:
        raise AssertionError("scikit-learn's own method was called")

    for method in ("predict", "predict_proba"):  # the compiled scorer answers every row
        monkeypatch.setattr(_final(model), method, not_called, raising=False)
    for batch in (1, 50):
        calls = [score(_rows(X, i, i + batch)) for i in range(0, len(X), batch)]
        _assert_bits(np.concatenate([p for p, _ in calls]), own_predictions)
        if classifier:
            _assert_bits(np.concatenate([q for _, q in calls]), own_proba)
        else:
            assert all(q is None for _, q in calls)


@pytest.mark.parametrize("case", ["rf-nan", "et", "gb-multiclass", "rf-regressor"])
def test_probe_rows_reach_every_leaf_of_every_tree(case: str) -> None:
    model, _, _, classifier = _fitted(case)
    compiled = compile_ensemble(_final(model), classifier)
    arrays = compiled.arrays
    base = np.zeros(arrays.width)
    probe = leaf_rows(arrays, range(arrays.n_trees), base, True, compiled.allow_nan)
    trees = np.ravel(_final(model).estimators_)
    for t, tree in enumerate(trees):
        mine = (probe.trees == t) & (probe.leaves >= 0)
        reached = tree.apply(probe.rows[mine].astype(np.float32))
        offset = int(compiled.arrays.roots[t])
        np.testing.assert_array_equal(reached, probe.leaves[mine] - offset)
        leaves = np.flatnonzero(tree.tree_.children_left < 0)
        assert set(reached.tolist()) == set(leaves.tolist()), f"tree {t} has unprobed leaves"


@pytest.mark.parametrize("case", ["rf", "et-regressor", "gb", "hgb-nan", "hgb-categorical"])
def test_one_wrong_leaf_is_refused_and_scikit_learn_serves(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, X, fast, classifier = _fitted(case)
    real = treescore.compile_ensemble
    monkeypatch.setattr(treescore, "compile_ensemble", lambda *a: one_leaf_off(real(*a)))
    score = compile_scorer(model, classifier, fast=fast)
    assert score.name == SKLEARN
    assert "answers differently from scikit-learn's" in score.refused
    predictions, proba = score(X)
    _assert_bits(predictions, model.predict(X))
    if classifier:
        _assert_bits(proba, model.predict_proba(X))


def test_the_probe_catches_a_wrong_leaf_in_every_tree_it_could_be_in() -> None:
    model, _, _, _ = _fitted("gb-multiclass")
    compiled = compile_ensemble(model, True)
    assert verify(compiled) == ""
    leaves = np.flatnonzero(compiled.arrays.left == np.arange(len(compiled.arrays.left)))
    for leaf in leaves[:: max(1, len(leaves) // 40)]:
        table = compiled.table.copy()
        table[leaf, 0] = np.nextafter(table[leaf, 0], -np.inf)
        assert verify(dataclasses.replace(compiled, table=table)) != "", leaf


def test_a_large_ensemble_is_probed_a_group_of_trees_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Probed in groups of a few trees, with a sample of the rows through the whole model,
    the probe still passes an exact forest and refuses one leaf off in its last tree."""
    model, _, _, _ = _fitted("rf-nan")
    compiled = compile_ensemble(model, True)
    monkeypatch.setattr(treeprobe, "GROUP_NODES", 100)
    monkeypatch.setattr(treeprobe, "FULL_CELLS", 2_000)
    assert verify(compiled) == ""
    assert "tree 19 answers differently" in verify(one_leaf_off(compiled))


@pytest.mark.parametrize("case", ["rf", "gb", "hgb"])
def test_calls_the_compiled_scorer_cannot_take_get_scikit_learns_answer(case: str) -> None:
    model, X, _, _ = _fitted(case)
    score = compile_scorer(model, True)
    assert score.name == COMPILED
    rows = X[:3].copy()
    rows[1, 0] = np.inf
    try:
        own: Any = (model.predict(rows), model.predict_proba(rows))
    except ValueError as exc:  # forests and gradient boosting refuse infinity
        with pytest.raises(ValueError, match=str(exc)[:40]):
            score(rows)
    else:  # histogram boosting compares it like any number
        got = score(rows)
        _assert_bits(got[0], own[0])
        _assert_bits(got[1], own[1])
    nan_rows = X[:3].copy()
    nan_rows[0, 2] = np.nan
    if case == "gb":  # gradient boosting refuses missing values: its own error
        with pytest.raises(ValueError, match="NaN"):
            score(nan_rows)
    with pytest.raises(ValueError, match="features"):
        score(X[:2, :5])


def test_multi_output_forest_is_not_compiled() -> None:
    X, y = numeric("cancer")
    forest = RandomForestRegressor(5, random_state=0).fit(X, np.stack([y, y * 2.0], axis=1))
    score = compile_scorer(forest, False)
    assert score.name == SKLEARN and "multi-output" in score.refused
    _assert_bits(score(X[:7])[0], forest.predict(X[:7]))
