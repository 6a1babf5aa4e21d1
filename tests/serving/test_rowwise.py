"""A model with a part that computes a call's rows together is never merged, wherever the part
sits, even where the load probe's rows cannot show the difference; row-wise models still are."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import (
    AdaBoostClassifier,
    BaggingClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    StackingClassifier,
    VotingClassifier,
)
from sklearn.impute import KNNImputer, SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB, MultinomialNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import SVC

from app.config import Settings
from app.registry.store import Registry
from app.serving.exactness import merges_exactly, probe_records
from app.serving.rowwise import MAX_PARTS, rows_together
from app.serving.runner import ServedModel
from app.training.train import fitted_fields
from tests.helpers.toy_models import SlowModel

X_ALL, Y_ALL = load_breast_cancer(return_X_y=True)
X_TRAIN, Y_TRAIN, X_TEST = X_ALL[::2], Y_ALL[::2], X_ALL[1::2]


def _fit(model: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X_TRAIN, Y_TRAIN)


def _stacking() -> StackingClassifier:
    return StackingClassifier(
        [("forest", RandomForestClassifier(10, random_state=0)), ("nb", GaussianNB())]
    )


def _columns(final: Any) -> Any:
    scaled = ColumnTransformer([("scaled", StandardScaler(), list(range(30)))])
    return make_pipeline(scaled, final)


TOGETHER = {
    "stacking-final": (_stacking, "model.final_estimator_ (LogisticRegression)"),
    "pipeline-step": (
        lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "model.steps[1][1] (LogisticRegression)",
    ),
    "column-transformer-then-svc": (lambda: _columns(SVC()), "SVC"),
    "bagging-member": (
        lambda: BaggingClassifier(
            make_pipeline(StandardScaler(), LogisticRegression()), 2, random_state=0
        ),
        "LogisticRegression",
    ),
    "boosting-init": (
        lambda: GradientBoostingClassifier(
            n_estimators=5, init=make_pipeline(StandardScaler(), LogisticRegression())
        ),
        "model.init_",
    ),
    "voting-member": (
        lambda: VotingClassifier(
            [("nb", GaussianNB()), ("knn", KNeighborsClassifier())], voting="soft"
        ),
        "KNeighborsClassifier",
    ),
    "knn-imputer": (
        lambda: make_pipeline(KNNImputer(), RandomForestClassifier(5, random_state=0)),
        "KNNImputer",
    ),
    "multinomial-nb": (lambda: make_pipeline(MinMaxScaler(), MultinomialNB()), "MultinomialNB"),
}

ROWWISE = {
    "forest": lambda: RandomForestClassifier(20, random_state=0),
    "hist-boosting": lambda: HistGradientBoostingClassifier(max_iter=10, random_state=0),
    "gradient-boosting": lambda: GradientBoostingClassifier(n_estimators=5, random_state=0),
    "adaboost": lambda: AdaBoostClassifier(n_estimators=5, random_state=0),
    "gaussian-nb": GaussianNB,
    "scaled-imputed-forest": lambda: make_pipeline(
        SimpleImputer(), StandardScaler(), RandomForestClassifier(5, random_state=0)
    ),
    "soft-vote-of-trees-and-nb": lambda: VotingClassifier(
        [("nb", GaussianNB()), ("forest", RandomForestClassifier(5, random_state=0))],
        voting="soft",
    ),
    "stacking-into-a-forest": lambda: StackingClassifier(
        [("nb", GaussianNB()), ("forest", RandomForestClassifier(5, random_state=0))],
        final_estimator=RandomForestClassifier(5, random_state=0),
    ),
    "users-own-class": lambda: SlowModel(0.0),
}


@pytest.mark.parametrize("name", list(TOGETHER))
def test_the_part_that_computes_rows_together_is_named(name: str) -> None:
    make, where = TOGETHER[name]
    found = rows_together(_fit(make()))
    assert found is not None and where in found, found


@pytest.mark.parametrize("name", list(ROWWISE))
def test_row_wise_models_have_no_such_part(name: str) -> None:
    assert rows_together(_fit(ROWWISE[name]())) is None


def _alone_and_merged(model: Any, rows: Any) -> tuple[list[str], list[str]]:
    alone = [repr(model.predict_proba(rows[i : i + 1]).tolist()[0]) for i in range(len(rows))]
    merged = [repr(row) for row in model.predict_proba(rows).tolist()]
    return alone, merged


def _load(tmp_path: Path, model: Any, executor: ThreadPoolExecutor) -> ServedModel:
    registry = Registry(tmp_path / "models")
    names = [f"f{j}" for j in range(X_TRAIN.shape[1])]
    fields = fitted_fields(model, "classification", names, X_TRAIN, Y_TRAIN, X_TRAIN[0])
    meta = registry.register("stacked", model, fields)
    settings = Settings(registry=tmp_path / "models")
    return ServedModel.load(registry, "stacked", meta.version, settings, executor)


def test_a_stacked_model_the_probe_passes_is_not_merged(tmp_path: Path) -> None:
    """Real rows scored alone and together differ in the last bits; the probe's rows do not:
    the version is served one call per request all the same."""
    model = _fit(_stacking())
    alone, merged = _alone_and_merged(model, X_TEST)
    assert alone != merged  # the hazard: merged calls would change some answers
    with ThreadPoolExecutor(1) as executor:
        served = _load(tmp_path, model, executor)
        probe = probe_records(served.metadata)

        def score(rows: Any) -> tuple[Any, Any]:
            result = served.score(rows)
            return result.predictions, result.probabilities

        assert merges_exactly(score, served.contract, probe)  # the probe alone would merge
        assert not served.merges


def test_a_row_wise_model_is_still_merged(tmp_path: Path) -> None:
    model = _fit(RandomForestClassifier(20, random_state=0))
    with ThreadPoolExecutor(1) as executor:
        assert _load(tmp_path, model, executor).merges


class Opaque:
    """A user's model whose attributes raise when looked up by name (a lazy proxy)."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name} here")


def test_a_model_that_cannot_be_looked_through_is_not_merged() -> None:
    found = rows_together(Opaque())
    assert found is not None and "could not be looked through" in found


class Holder(BaseEstimator):  # type: ignore[misc]
    """A user's model holding a logistic regression and, looked through first, many strings."""

    def __init__(self, model: Any = None, categories: Any = None) -> None:
        self.model = model
        self.categories = categories


def test_many_strings_do_not_hide_the_part_after_them() -> None:
    """An encoder's categories are not parts: however many, the walk still reaches the model."""
    categories = np.array([f"c{i}" for i in range(MAX_PARTS + 1)], dtype=object)
    found = rows_together(Holder(LogisticRegression(), [categories]))
    assert found == "model.model (LogisticRegression)"
