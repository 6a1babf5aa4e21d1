"""app.serving.explain in-process: exact contributions, the sum check, the refusals.

Each model is fitted here, registered in-process (its metadata stores the background sample)
and explained on held-out rows as the server receives them. Linear contributions are checked
against ``coef * (T(x) - mean of T(background))`` and tree contributions against shap's own
``TreeExplainer`` values, both computed in ``tests/helpers/explained.py`` with the transformed
columns read off the fitted encoders, not traced as the server does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

import tests.e2e.test_compatibility as compat
from app.config import Settings
from app.registry.metadata import ModelMetadata
from app.registry.store import Registry
from app.serving.contract import InputContract, model_input
from app.serving.explain.build import build
from app.serving.explain.model import ModelExplainer
from app.serving.explain.result import NotExplainableError, sum_gap
from app.serving.runner import ServedModel
from tests.helpers.explained import (
    linear_contributions,
    model_rows,
    own_output,
    records_of,
    register_fitted,
    shap_contributions,
)
from tests.helpers.mixed import TARGET, churn_frame, fit_churn
from tests.helpers.support import MODELS

ROWS = 60


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.registry = Registry(root / "models")
        self.cases: dict[str, compat.Case] = {}

    def family(self, name: str) -> tuple[compat.Case, ModelMetadata]:
        if name not in self.cases:
            (family,) = [f for f in compat.FAMILIES if f.name == name]
            self.cases[name] = compat.fit(family)
        case = self.cases[name]
        sample = compat.sample_frame(case)
        meta = register_fitted(
            self.registry, self.root, name, case.estimator, sample, case.family.task
        )
        return case, meta

    def fitted(self, name: str, estimator: Any, frame: pd.DataFrame, task: str) -> ModelMetadata:
        sample = frame.rename(columns={TARGET: "y"})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator.fit(sample.drop(columns="y"), sample["y"])
        return register_fitted(self.registry, self.root, name, estimator, sample, task)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("explain"))


def _explainer(estimator: Any, meta: ModelMetadata) -> ModelExplainer:
    return build(estimator, meta, InputContract(meta.features, meta.input_format))


def _held_out(case: compat.Case, meta: ModelMetadata) -> Any:
    """The first held-out rows as the server gives them to the model."""
    return model_rows(meta, case.records(0, min(ROWS, case.rows)))


LINEAR = ["logistic-iris", "scaler-logistic", "linear-svc", "ridge-classifier", "string-labels",
          "column-transformer", "linear-regression", "ridge", "frame-regression"]  # fmt: skip
TREES = ["random-forest", "extra-trees", "hist-gb", "hist-gb-nan", "decision-tree",
         "bool-labels", "frame-numeric", "random-forest-reg", "hist-gb-reg",
         "gradient-boosting-reg"]  # fmt: skip


@pytest.mark.parametrize("name", LINEAR)
def test_linear_contributions_are_coef_times_x_minus_the_background_mean(
    world: World, name: str
) -> None:
    case, meta = world.family(name)
    X = _held_out(case, meta)
    explanation = _explainer(case.estimator, meta).explain(X)
    background = model_rows(meta, meta.background)
    expected = linear_contributions(case.estimator, X, background, len(meta.features))
    np.testing.assert_allclose(explanation.contributions, expected, rtol=1e-12, atol=1e-12)
    space = "margin" if case.family.task == "classification" else "value"
    assert explanation.method == "linear" and explanation.output == space
    wanted = own_output(case.estimator, space, X)
    assert np.array_equal(explanation.output_values, wanted)
    total = explanation.base + explanation.contributions.sum(axis=1)
    assert np.abs(total - wanted).max() <= 1e-6
    assert len(meta.background) == min(100, len(case.data.X_train))


@pytest.mark.parametrize("name", TREES)
def test_tree_contributions_are_shaps_own_values_bit_for_bit(world: World, name: str) -> None:
    case, meta = world.family(name)
    X = _held_out(case, meta)
    explanation = _explainer(case.estimator, meta).explain(X)
    base, expected = shap_contributions(case.estimator, X, len(meta.features))
    assert explanation.method == "tree_shap"
    assert np.array_equal(explanation.contributions, expected)
    assert np.array_equal(explanation.base, base)
    wanted = own_output(case.estimator, explanation.output, X)
    total = explanation.base + explanation.contributions.sum(axis=1)
    assert np.abs(total - wanted).max() <= 1e-6


@pytest.mark.parametrize("name", [*LINEAR, *TREES])
def test_the_served_answers_explain_as_the_estimators_own_bit_for_bit(
    world: World, name: str
) -> None:
    """:explain and the attribution counters check the sum against the served scorer's answers
    (compiled trees, one-pass linear): the same explanation as from the estimator's methods."""
    case, meta = world.family(name)
    settings = Settings(registry=world.root / "models")
    with ThreadPoolExecutor(1) as executor:
        served = ServedModel.load(world.registry, name, meta.version, settings, executor)
    rows = served.contract.records(case.records(0, min(ROWS, case.rows)), "instances")
    result = served.score(rows)
    explainer = _explainer(served.estimator, meta)
    served_answers = explainer.explain(
        model_input(rows), (result.predictions, result.probabilities)
    )
    own = explainer.explain(model_input(rows))
    for field in ("predictions", "output_values", "base", "contributions", "output_names"):
        assert np.array_equal(getattr(served_answers, field), getattr(own, field)), field


def test_with_the_served_answers_a_forest_is_not_called_again(world: World) -> None:
    case, meta = world.family("random-forest")
    X = _held_out(case, meta)
    explainer = _explainer(case.estimator, meta)
    own = explainer.explain(X)
    answered = case.estimator.predict(X), case.estimator.predict_proba(X)
    forest = type(case.estimator)

    def refuse(*_: Any) -> Any:
        raise AssertionError("the estimator was called")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(forest, "predict", refuse)
        patch.setattr(forest, "predict_proba", refuse)
        again = explainer.explain(X, answered)
    assert np.array_equal(again.contributions, own.contributions)


def test_one_hot_columns_are_summed_back_to_their_string_feature(world: World) -> None:
    """The churn pipeline (one-hot plan and country, a missing tenure, then boosted trees)."""
    frame = churn_frame(400)
    estimator = fit_churn(frame)
    sample = frame.rename(columns={TARGET: "y"})
    meta = register_fitted(world.registry, world.root, "churn", estimator, sample, "classification")
    X = model_rows(meta, records_of(churn_frame(80, seed=5).drop(columns=TARGET)))
    explanation = _explainer(estimator, meta).explain(X)
    base, expected = shap_contributions(estimator, X, len(meta.features))
    assert explanation.features == meta.feature_names
    assert explanation.contributions.shape == (80, 6, 1) and explanation.output == "margin"
    assert np.array_equal(explanation.contributions, expected) and np.array_equal(
        explanation.base, base
    )
    assert explanation.output_names == ["yes"]  # the positive class of the one margin


def test_the_sum_check_names_the_first_row_that_does_not_add_up(world: World) -> None:
    case, meta = world.family("scaler-logistic")
    X = _held_out(case, meta)
    good = _explainer(case.estimator, meta).explain(X)
    assert sum_gap(good) is None
    shifted = good.contributions.copy()
    shifted[3, 7, 0] += 2e-6
    bad = type(good)(**{**good.__dict__, "contributions": shifted})
    message = sum_gap(bad)
    assert message is not None and message.startswith("row 3, output 1:")


Refused = Callable[[World], tuple[Any, ModelMetadata]]


def _family(name: str) -> Refused:
    def make(world: World) -> tuple[Any, ModelMetadata]:
        case, meta = world.family(name)
        return case.estimator, meta

    return make


def _interactions(world: World) -> tuple[Any, ModelMetadata]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    frame["y"] = (frame.a * frame.b > 0).astype(int)
    model = make_pipeline(PolynomialFeatures(2), StandardScaler(), LogisticRegression())
    meta = world.fitted("interactions", model, frame, "classification")
    return world.registry.load("interactions", meta.version).estimator, meta


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (_family("svc-no-proba"), "SVC has no exact explainer; :explain covers linear models"),
        (_family("knn"), "KNeighborsClassifier has no exact explainer"),
        (_family("mlp"), "MLPClassifier has no exact explainer"),
        (_family("gradient-boosting"), "shap cannot explain it: InvalidModelError"),
        (_family("hist-gb-category-dtype"), "takes columns that are not numbers"),
        # shap reads HistGradientBoosting's categorical splits as thresholds: wrong values
        (_family("hist-gb-categorical"), "its contributions do not add up: row 0"),
        (_interactions, "depends on 'a' and 'b' at once"),
    ],
    ids=["svc", "knn", "mlp", "gb-multiclass", "category-dtype", "hgb-categorical", "poly"],
)
def test_versions_without_an_exact_explainer_are_refused_saying_why(
    world: World, make: Refused, said: str
) -> None:
    estimator, meta = make(world)
    with pytest.raises(NotExplainableError) as refused:
        _explainer(estimator, meta)
    assert said in str(refused.value), str(refused.value)


def test_a_version_without_background_uses_its_training_means_if_all_numbers(
    world: World,
) -> None:
    """The committed default model predates backgrounds: its reference means stand in."""
    committed = Registry(MODELS).load("breast-cancer", "1")
    meta, estimator = committed.metadata, committed.estimator
    assert meta.background == []
    X = np.asarray([meta.example], dtype=np.float64)
    explanation = _explainer(estimator, meta).explain(X)
    means = np.asarray([[meta.reference.features[n].mean for n in meta.feature_names]])
    expected = linear_contributions(estimator, X, means, len(meta.features))
    np.testing.assert_allclose(explanation.contributions, expected, rtol=1e-12, atol=1e-12)


def test_a_version_without_background_and_with_strings_is_refused_if_linear(
    world: World,
) -> None:
    case, meta = world.family("column-transformer")
    old = meta.model_copy(update={"background": []})
    with pytest.raises(NotExplainableError, match="stores no background sample"):
        _explainer(case.estimator, old)
    trees, tree_meta = world.family("hist-gb-nan")  # TreeSHAP needs no background
    _explainer(trees.estimator, tree_meta.model_copy(update={"background": []}))
