"""Compatibility table: every estimator family answers over HTTP exactly as it does in-process.

Each family is fitted here (bundled or synthetic data), dumped with joblib and registered with
the real ``modelserve register`` command (a sample with the target, so metrics are computed;
gates that never refuse a weak model) and promoted. ONE ``modelserve serve`` process serves
all of them; 16 concurrent clients send every held-out row in batches of 1 and of 50 to
``/v1/models/{name}:predict``, ``/v2/models/{name}/infer`` and ``/models/{name}/invocations``,
and ``modelserve predict`` scores all of them from one file. Every answer must be *exactly*
what the estimator returns in-process on what it was fitted on (a DataFrame with the training
dtypes, or a float64 array): the parsed JSON values compared with ``predict(X).tolist()`` and
``predict_proba(X).tolist()``, with the same JSON types (ints stay ints, strings strings,
bools bools) and floats identical to the last bit. The forests and boosting families are
answered by their compiled scorers (``GET /models/{name}`` says ``compiled-trees``).

Families whose final step multiplies matrices through BLAS (``blas=True``: linear models, the
MLP) give a row other last bits in a call of 1 row than in a call of 200 (measured: up to 148
of 200 rows), so no server could match ``predict(X)`` on all rows for single-row requests;
their reference is the estimator called on each request's rows alone, which is what the
server promises (``app/serving/exactness.py``: such models are not merged into batches).
For every other family the test checks in-process that rows scored alone equal ``predict(X)``.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.cross_decomposition import PLSRegression
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_iris,
    load_wine,
    make_classification,
    make_regression,
)
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
from sklearn.ensemble import (
    AdaBoostClassifier,
    BaggingClassifier,
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    StackingClassifier,
    VotingClassifier,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer, TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, RidgeClassifier
from sklearn.model_selection import train_test_split
from sklearn.multiclass import OneVsRestClassifier
from sklearn.naive_bayes import GaussianNB, MultinomialNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder, StandardScaler
from sklearn.semi_supervised import LabelSpreading
from sklearn.svm import SVC, SVR, LinearSVC
from sklearn.tree import DecisionTreeClassifier

from app.serving.treescore import compiles
from tests.helpers.clients import KeepAlive, run_jobs
from tests.helpers.promtext import samples
from tests.helpers.support import Server, run_cli

pytestmark = pytest.mark.e2e

SEED = 0
HELD_OUT = 200  # rows per family (fewer when the data set is smaller: all held-out rows)
BATCHES = (1, 50)
CLIENTS = 16
TARGET = "y"

Matrix = npt.NDArray[Any]
Features = Matrix | pd.DataFrame | pd.Series  # a Series: a text model's documents


@dataclass(frozen=True)
class Data:
    X_train: Features
    y_train: Matrix
    X_test: Features


@dataclass(frozen=True)
class Family:
    name: str
    data: Callable[[], Data]
    make: Callable[[], Any]
    task: str = "classification"
    blas: bool = False
    """The final estimator multiplies matrices through BLAS (linear models, MLP): in-process,
    a row's last bits depend on the length of the call and the row's place in it."""


# ---- data sets ---------------------------------------------------------------------------


def _split(X: Features, y: Matrix, classification: bool) -> Data:
    n = len(y)
    test = min(HELD_OUT, n // 2)
    X_train, X_test, y_train, _ = train_test_split(
        X, y, test_size=test, random_state=SEED, stratify=y if classification else None
    )
    if isinstance(X_train, pd.DataFrame | pd.Series):
        X_train, X_test = X_train.reset_index(drop=True), X_test.reset_index(drop=True)
    return Data(X_train, np.asarray(y_train), X_test)


@functools.cache
def iris() -> Data:
    X, y = load_iris(return_X_y=True)
    return _split(np.asarray(X, dtype=np.float64), y, True)


@functools.cache
def iris_names() -> Data:
    """Iris with the class names as labels (strings)."""
    bunch = load_iris()
    labels = np.asarray(bunch.target_names, dtype=object)[bunch.target]
    return _split(np.asarray(bunch.data, dtype=np.float64), labels, True)


@functools.cache
def iris_frame() -> Data:
    """Iris as a numeric DataFrame: the estimator knows feature_names_in_."""
    X, y = load_iris(return_X_y=True, as_frame=True)
    return _split(X.astype(np.float64), np.asarray(y), True)


@functools.cache
def wine() -> Data:
    X, y = load_wine(return_X_y=True)
    return _split(np.asarray(X, dtype=np.float64), y, True)


@functools.cache
def wine_379() -> Data:
    """Wine with integer labels that are not 0..k-1."""
    X, y = load_wine(return_X_y=True)
    return _split(np.asarray(X, dtype=np.float64), np.array([3, 7, 9])[y], True)


@functools.cache
def cancer() -> Data:
    X, y = load_breast_cancer(return_X_y=True)
    return _split(np.asarray(X, dtype=np.float64), y, True)


@functools.cache
def cancer_bool() -> Data:
    X, y = load_breast_cancer(return_X_y=True)
    return _split(np.asarray(X, dtype=np.float64), y.astype(bool), True)


@functools.cache
def diabetes() -> Data:
    X, y = load_diabetes(return_X_y=True)
    return _split(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64), False)


@functools.cache
def blobs() -> Data:
    """Synthetic three-class problem, 600 rows, 8 features."""
    X, y = make_classification(
        n_samples=600, n_features=8, n_informative=5, n_classes=3, random_state=SEED
    )
    return _split(X, y, True)


@functools.cache
def blobs_nan() -> Data:
    """The synthetic problem with about 12 % of the cells missing (NaN), train and test."""
    X, y = make_classification(
        n_samples=600, n_features=8, n_informative=5, n_classes=2, random_state=SEED + 1
    )
    rng = np.random.default_rng(SEED)
    X[rng.random(X.shape) < 0.12] = np.nan
    return _split(X, y, True)


@functools.cache
def regression() -> Data:
    X, y = make_regression(n_samples=500, n_features=6, noise=10.0, random_state=SEED)
    return _split(X, y, False)


@functools.cache
def mixed_frame() -> Data:
    """Strings (with missing values and unseen categories in the held-out rows), an integer,
    floats (one nullable), a boolean: what a ColumnTransformer pipeline is fitted on."""
    n = 700
    rng = np.random.default_rng(SEED)
    city = rng.choice(["paris", "lyon", "nice", "lille"], n).astype(object)
    plan = rng.choice(["basic", "pro", "team"], n).astype(object)
    plan[rng.random(n) < 0.08] = np.nan
    age = rng.integers(18, 80, n).astype(np.int64)
    income = rng.normal(40_000, 12_000, n)
    income[rng.random(n) < 0.1] = np.nan
    score = rng.normal(0, 1, n)
    member = rng.random(n) < 0.4
    logit = (
        (city == "paris") * 1.2
        - (plan == "basic") * 0.8
        + (age - 50) / 20
        + np.nan_to_num(income - 40_000) / 20_000
        + score
        + member * 0.7
    )
    y = (logit + rng.normal(0, 0.7, n) > 0.2).astype(np.int64)
    frame = pd.DataFrame(
        {
            "city": city,
            "plan": plan,
            "age": age,
            "income": income,
            "score": score,
            "member": member,
        }
    )
    data = _split(frame, y, True)
    # Categories training never saw: the fitted encoder ignores them (handle_unknown).
    assert isinstance(data.X_test, pd.DataFrame)
    X_test = data.X_test.copy()
    X_test.loc[::9, "city"] = "brest"
    X_test.loc[4::17, "plan"] = "enterprise"
    return Data(data.X_train, data.y_train, X_test)


@functools.cache
def shops_frame() -> Data:
    """Integer-coded categorical columns (for categorical_features by name) and numbers."""
    n = 600
    rng = np.random.default_rng(SEED + 2)
    shop = rng.integers(0, 6, n).astype(np.int64)
    region = rng.integers(0, 4, n).astype(np.int64)
    amount = rng.gamma(2.0, 30.0, n)
    qty = rng.integers(1, 9, n).astype(np.int64)
    signal = np.isin(shop, [1, 4]) * 1.5 + (region == 2) * 1.0 + amount / 60 + qty / 8
    y = np.digitize(signal + rng.normal(0, 0.5, n), [1.6, 2.6]).astype(np.int64)
    frame = pd.DataFrame({"shop": shop, "region": region, "amount": amount, "qty": qty})
    return _split(frame, y, True)


@functools.cache
def colours_frame() -> Data:
    """A pandas ``category`` column of strings (categorical_features="from_dtype")."""
    n = 500
    rng = np.random.default_rng(SEED + 3)
    colour = rng.choice(["red", "green", "blue", "black"], n)
    size = rng.normal(10, 3, n)
    y = (colour == "red") * 2.0 + (colour == "blue") + size / 5 + rng.normal(0, 1, n) > 3.5
    frame = pd.DataFrame({"colour": pd.Categorical(colour), "size": size})
    return _split(frame, y.astype(np.int64), True)


@functools.cache
def counts_frame() -> Data:
    """A regression DataFrame with int64, float64 and bool columns."""
    n = 500
    rng = np.random.default_rng(SEED + 4)
    rooms = rng.integers(1, 7, n).astype(np.int64)
    area = rng.normal(70, 20, n)
    garden = rng.random(n) < 0.3
    price = 30 * rooms + 2.5 * area + 40 * garden + rng.normal(0, 15, n)
    frame = pd.DataFrame({"rooms": rooms, "area": area, "garden": garden})
    return _split(frame, price, False)


@functools.cache
def reviews() -> Data:
    """Short reviews, one string each (a pandas Series): what a text model is fitted on. Case,
    punctuation, accents and an emoji: the vectorizer's tokens, not the server's business."""
    rng = np.random.default_rng(SEED + 5)
    words = ["good", "Great!", "fine", "love", "nice", "cheap", "bad", "awful", "slow", "hate"]
    words += ["broken", "ok", "très bien", "naïve", "meh...", "😀", "so-so", "the", "a", "it"]
    good = {"good", "Great!", "fine", "love", "nice", "cheap", "très bien", "😀"}
    docs = [list(rng.choice(words, rng.integers(3, 14))) for _ in range(600)]
    y = [2 * sum(w in good for w in doc) > sum(w not in good for w in doc) for doc in docs]
    texts = pd.Series([" ".join(doc) for doc in docs], name="review")
    return _split(texts, np.asarray(y, dtype=np.int64), True)


# ---- families ------------------------------------------------------------------------------


def _mixed_pipeline() -> Pipeline:
    columns = ColumnTransformer(
        [
            ("strings", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
            ("numbers", StandardScaler(), ["age", "score"]),
            ("flags", "passthrough", ["member"]),
            ("nullable", SimpleImputer(strategy="median"), ["income"]),
        ]
    )
    return Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=500))])


def _scaled(model: Any) -> Callable[[], Pipeline]:
    return lambda: make_pipeline(StandardScaler(), model)


def _stacked() -> StackingClassifier:
    members = [("forest", RandomForestClassifier(10, random_state=SEED)), ("nb", GaussianNB())]
    return StackingClassifier(members)


def _voting() -> VotingClassifier:
    members = [
        ("logistic", LogisticRegression(max_iter=500)),
        ("forest", RandomForestClassifier(10, random_state=SEED)),
    ]
    return VotingClassifier(members, voting="soft")


def _binned_forest() -> Pipeline:
    binned = KBinsDiscretizer(encode="ordinal", quantile_method="averaged_inverted_cdf")
    return make_pipeline(binned, RandomForestClassifier(10, random_state=SEED))


def _text(*steps: Any) -> Callable[[], Pipeline]:
    return lambda: make_pipeline(*(clone(step) for step in steps))


def _log_target() -> TransformedTargetRegressor:
    return TransformedTargetRegressor(Ridge(), func=np.log1p, inverse_func=np.expm1)


REG = "regression"
FAMILIES = [
    Family("random-forest", cancer, lambda: RandomForestClassifier(30, random_state=SEED)),
    Family("extra-trees", wine, lambda: ExtraTreesClassifier(30, random_state=SEED)),
    Family(
        "gradient-boosting",
        blobs,
        lambda: GradientBoostingClassifier(n_estimators=30, random_state=SEED),
    ),
    Family(
        "hist-gb", cancer, lambda: HistGradientBoostingClassifier(max_iter=30, random_state=SEED)
    ),
    Family(
        "hist-gb-nan",
        blobs_nan,
        lambda: HistGradientBoostingClassifier(max_iter=30, random_state=SEED),
    ),
    Family(
        "hist-gb-categorical",
        shops_frame,
        lambda: HistGradientBoostingClassifier(
            max_iter=30, categorical_features=["shop", "region"], random_state=SEED
        ),
    ),
    Family(
        "hist-gb-category-dtype",
        colours_frame,
        lambda: HistGradientBoostingClassifier(
            max_iter=30, categorical_features="from_dtype", random_state=SEED
        ),
    ),
    Family("adaboost", iris, lambda: AdaBoostClassifier(n_estimators=30, random_state=SEED)),
    Family("bagging", cancer, lambda: BaggingClassifier(n_estimators=10, random_state=SEED)),
    Family("decision-tree", blobs, lambda: DecisionTreeClassifier(max_depth=6, random_state=SEED)),
    Family("logistic-iris", iris, lambda: LogisticRegression(max_iter=500), blas=True),
    Family("scaler-logistic", cancer, _scaled(LogisticRegression()), blas=True),
    Family("linear-svc", cancer, _scaled(LinearSVC(random_state=SEED))),
    Family("svc-no-proba", wine, _scaled(SVC())),
    Family("svc-proba", iris, lambda: SVC(probability=True, random_state=SEED)),
    Family("knn", wine, lambda: KNeighborsClassifier(5)),
    Family("gaussian-nb", wine, GaussianNB),
    Family("mlp", blobs, _scaled(MLPClassifier((16,), max_iter=200, random_state=SEED)), blas=True),
    Family("ridge-classifier", cancer, RidgeClassifier),
    Family("string-labels", iris_names, lambda: LogisticRegression(max_iter=500), blas=True),
    Family("bool-labels", cancer_bool, lambda: RandomForestClassifier(10, random_state=SEED)),
    Family("int-labels-3-7-9", wine_379, _scaled(LogisticRegression()), blas=True),
    Family("column-transformer", mixed_frame, _mixed_pipeline, blas=True),
    Family("frame-numeric", iris_frame, lambda: RandomForestClassifier(20, random_state=SEED)),
    # A final logistic regression on a forest's and a naive Bayes' probabilities: its merged
    # rows differ in the last bits where the load probe's rows do not reach (app.serving.rowwise).
    Family("stacking", cancer, _stacked, blas=True),
    Family("soft-voting", iris, _voting, blas=True),
    Family("qda", iris, QuadraticDiscriminantAnalysis, blas=True),
    Family("calibrated-svc", cancer, _scaled(CalibratedClassifierCV(LinearSVC())), blas=True),
    Family("label-spreading", iris, LabelSpreading, blas=True),
    Family("one-vs-rest", wine, _scaled(OneVsRestClassifier(LogisticRegression())), blas=True),
    Family("kbins-forest", blobs, _binned_forest),
    # Fitted on a sequence of strings: the server hands the model one document per row.
    Family("tfidf-logistic", reviews, _text(TfidfVectorizer(), LogisticRegression()), blas=True),
    Family(
        "counts-bayes",
        reviews,
        _text(CountVectorizer(ngram_range=(1, 2)), MultinomialNB()),
        blas=True,
    ),
    Family(
        "hashing-forest",
        reviews,
        _text(HashingVectorizer(n_features=512), RandomForestClassifier(10, random_state=SEED)),
    ),
    Family("linear-regression", diabetes, LinearRegression, REG, blas=True),
    Family("ridge", regression, Ridge, REG, blas=True),
    Family(
        "random-forest-reg", diabetes, lambda: RandomForestRegressor(30, random_state=SEED), REG
    ),
    Family(
        "hist-gb-reg",
        regression,
        lambda: HistGradientBoostingRegressor(max_iter=30, random_state=SEED),
        REG,
    ),
    Family("svr", diabetes, SVR, REG),
    Family("knn-reg", regression, lambda: KNeighborsRegressor(5), REG),
    Family(
        "gradient-boosting-reg",
        diabetes,
        lambda: GradientBoostingRegressor(n_estimators=30, random_state=SEED),
        REG,
    ),
    Family("frame-regression", counts_frame, Ridge, REG, blas=True),
    Family("pls", diabetes, lambda: PLSRegression(2), REG, blas=True),
    Family("log-target", diabetes, _log_target, REG, blas=True),
]
NAMES = [f.name for f in FAMILIES]
ROUTES = [f"{r}-{b}" for r in ("v1", "v2", "invocations") for b in BATCHES] + ["cli"]


# ---- JSON natives and exact comparison -----------------------------------------------------


def native(value: Any) -> Any:
    """A cell as the JSON value a client sends: NaN/None/NA as null, numpy scalars unwrapped."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def columns_of(X: Features) -> dict[str, list[Any]]:
    """Each feature's held-out values as JSON natives, by feature name."""
    if isinstance(X, pd.Series):
        return {str(X.name): X.tolist()}
    if isinstance(X, pd.DataFrame):
        return {str(c): [native(v) for v in X[c].tolist()] for c in X.columns}
    return {f"x{j}": [native(v) for v in X[:, j].tolist()] for j in range(X.shape[1])}


def datatype(X: Features, name: str) -> str:
    """The OIP datatype a client picks for a feature column."""
    if isinstance(X, pd.Series):
        return "BYTES"
    if not isinstance(X, pd.DataFrame):
        return "FP64"
    dtype = X[name].dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "BOOL"
    if pd.api.types.is_integer_dtype(dtype):
        return "INT64"
    if pd.api.types.is_float_dtype(dtype):
        return "FP64"
    return "BYTES"


def key(value: Any) -> str:
    """A JSON value with every scalar tagged by its type, floats by repr: equal keys mean the
    same JSON types and bit-identical floats (``1 == 1.0 == True`` in Python, not here)."""

    def tag(v: Any) -> Any:
        if isinstance(v, list):
            return [tag(x) for x in v]
        return (type(v).__name__, repr(v))

    return repr(tag(value))


def rows_of(X: Any, start: int, stop: int) -> Any:
    return X.iloc[start:stop] if isinstance(X, pd.DataFrame | pd.Series) else X[start:stop]


# ---- one family: fitted, its in-process answers, registered, its requests ------------------

Scored = tuple[list[Any], list[Any] | None]


def score(estimator: Any, X: Any, task: str) -> Scored:
    """``predict(X).tolist()`` and, for classifiers that have it, ``predict_proba(X).tolist()``."""
    predictions = np.asarray(estimator.predict(X)).tolist()
    if task != "classification" or not hasattr(estimator, "predict_proba"):
        return predictions, None
    return predictions, np.asarray(estimator.predict_proba(X)).tolist()


@dataclass
class Case:
    family: Family
    estimator: Any
    data: Data
    predictions: list[Any]
    """``estimator.predict(X_test).tolist()``."""
    probabilities: list[list[float]] | None
    """``estimator.predict_proba(X_test).tolist()`` for classifiers that have it."""
    columns: dict[str, list[Any]]
    per_request: dict[int, Scored] = field(default_factory=dict)
    """``blas`` families: the estimator called on each request's rows alone, by batch size."""

    @property
    def name(self) -> str:
        return self.family.name

    @property
    def frame(self) -> bool:
        return isinstance(self.data.X_train, pd.DataFrame)

    @property
    def text(self) -> bool:
        return isinstance(self.data.X_train, pd.Series)

    @property
    def input_format(self) -> str:
        return "frame" if self.frame else "text" if self.text else "array"

    @property
    def typed(self) -> bool:
        """Sent column-wise on v2 and as JSON to the CLI: fitted on a frame, or with nulls."""
        return self.frame or self.text or any(v is None for c in self.columns.values() for v in c)

    @property
    def rows(self) -> int:
        return len(self.predictions)

    def expected(self, route: str) -> Scored:
        """What the estimator returns in-process for the rows as ``route`` sends them."""
        batch = 0 if route == "cli" else int(route.rsplit("-", 1)[1])
        return self.per_request.get(batch, (self.predictions, self.probabilities))

    def table(self, start: int, stop: int) -> list[list[Any]]:
        names = list(self.columns)
        return [[self.columns[n][i] for n in names] for i in range(start, stop)]

    def records(self, start: int, stop: int) -> list[Any]:
        """``instances``: objects keyed by feature name (frames), the texts themselves (text
        models), lists in order otherwise."""
        if self.text:
            return [row[0] for row in self.table(start, stop)]
        if self.frame:
            names = list(self.columns)
            return [dict(zip(names, row, strict=True)) for row in self.table(start, stop)]
        return self.table(start, stop)

    def body(self, route: str, start: int, stop: int) -> dict[str, Any]:
        if route == "v1":
            return {"instances": self.records(start, stop)}
        if route == "invocations":
            data = self.table(start, stop)
            return {"dataframe_split": {"columns": list(self.columns), "data": data}}
        outputs = [{"name": "predict"}]
        if self.probabilities is not None:
            outputs.append({"name": "predict_proba"})
        if self.typed:
            inputs = [
                {
                    "name": name,
                    "shape": [stop - start],
                    "datatype": datatype(self.data.X_test, name),
                    "data": values[start:stop],
                }
                for name, values in self.columns.items()
            ]
        else:
            flat = [v for row in self.table(start, stop) for v in row]
            shape = [stop - start, len(self.columns)]
            inputs = [{"name": "input-0", "shape": shape, "datatype": "FP64", "data": flat}]
        return {"inputs": inputs, "outputs": outputs}


def in_calls(estimator: Any, X: Features, task: str, batch: int) -> Scored:
    """The estimator called on each slice of ``batch`` rows of ``X``, concatenated."""
    predictions: list[Any] = []
    probabilities: list[Any] | None = None
    for start in range(0, len(X), batch):
        p, q = score(estimator, rows_of(X, start, start + batch), task)
        predictions += p
        if q is not None:
            probabilities = (probabilities or []) + q
    return predictions, probabilities


def fit(family: Family) -> Case:
    data = family.data()
    estimator = family.make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", "The `probability` parameter", FutureWarning)
        estimator.fit(data.X_train, data.y_train)
    predictions, probabilities = score(estimator, data.X_test, family.task)
    case = Case(family, estimator, data, predictions, probabilities, columns_of(data.X_test))
    if family.blas:
        # A row's last bits depend on the call it is in, so predict(X) on all rows is not what
        # a request of one row gets in-process: each route's reference is the estimator called
        # on every request's rows alone, as the server must call it.
        case.per_request = {
            batch: in_calls(estimator, data.X_test, family.task, batch) for batch in BATCHES
        }
    else:
        # Rows scored alone or in short calls are those of the call on all rows, so predict(X)
        # is the reference of every route, whatever batches the server merges.
        head = rows_of(data.X_test, 0, 8)
        whole = key([predictions[:8], None if probabilities is None else probabilities[:8]])
        for batch in (1, 3):
            assert key(list(in_calls(estimator, head, family.task, batch))) == whole, (
                f"{family.name}: rows scored in calls of {batch} differ from predict(X) in "
                "process; mark the family blas=True"
            )
    return case


def mismatch(expected: Sequence[Any], got: Sequence[Any], what: str) -> str | None:
    """None when every row is equal in value and JSON type, floats to the last bit; else which
    rows differ, the first ones shown."""
    if len(expected) != len(got):
        return f"{what}: expected {len(expected)} rows, got {len(got)}"
    bad = [i for i, (e, g) in enumerate(zip(expected, got, strict=True)) if key(e) != key(g)]
    if not bad:
        return None
    shown = "; ".join(f"row {i}: expected {expected[i]!r}, got {got[i]!r}" for i in bad[:3])
    return f"{what}: {len(bad)} of {len(expected)} rows differ ({shown})"


def sample_frame(case: Case) -> pd.DataFrame:
    """The training rows with the target column: the register command's sample."""
    X = case.data.X_train
    if isinstance(X, pd.DataFrame):
        frame = X.copy()
    elif isinstance(X, pd.Series):
        frame = X.to_frame()
    else:
        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
    frame[TARGET] = case.data.y_train
    return frame


def register(case: Case, work: Path, registry: Path) -> str:
    """``modelserve register NAME model.joblib --sample train.csv --target y --promote``."""
    where = work / case.name
    where.mkdir(parents=True)
    artifact = where / "model.joblib"
    joblib.dump(case.estimator, artifact)
    sample = where / "train.csv"
    sample_frame(case).to_csv(sample, index=False)
    gate = "accuracy>=0" if case.family.task == "classification" else "r2>=-1e9"
    result = run_cli(
        "register",
        case.name,
        str(artifact),
        "--sample",
        str(sample),
        "--target",
        TARGET,
        "--task",
        case.family.task,
        "--gate",
        gate,
        "--promote",
        "--registry",
        str(registry),
    )
    output = f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, f"modelserve register {case.name} failed: {output}"
    return output


def cli_input(case: Case, where: Path) -> Path:
    """All held-out rows as a file: CSV (floats by repr) for plain numeric models, JSON
    natives (objects for frames, null for missing values) for the others."""
    if not case.typed:
        path = where / "rows.csv"
        lines = [",".join(case.columns)]
        lines += [",".join(repr(v) for v in row) for row in case.table(0, case.rows)]
        path.write_text("\n".join(lines) + "\n")
        return path
    path = where / "rows.json"
    path.write_text(json.dumps(case.records(0, case.rows)))
    return path


# ---- the world: all families registered, one server, every request sent -------------------


@dataclass
class Answer:
    """What one route returned for a family's held-out rows, in row order."""

    predictions: list[Any] = field(default_factory=list)
    probabilities: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    proba_key_seen: bool = False


@dataclass
class World:
    cases: dict[str, Case]
    answers: dict[tuple[str, str], Answer]
    registry: Path
    server_log: str
    model_calls: dict[str, float]
    """``modelserve_batch_size_count`` per model: the server's model calls."""
    scorers: dict[str, str]
    """What ``GET /models/{name}`` says serves each model."""


@dataclass(frozen=True)
class Job:
    case: str
    route: str
    batch: int
    start: int
    stop: int


Parsed = tuple[list[Any], list[Any] | None, bool]


def _url(route: str, name: str) -> str:
    return {
        "v1": f"/v1/models/{name}:predict",
        "v2": f"/v2/models/{name}/infer",
        "invocations": f"/models/{name}/invocations",
    }[route]


def _parse(route: str, status: int, text: str, n: int) -> Parsed:
    """(predictions, probability rows or None, whether the body had a 'probabilities' key)."""
    if status != 200:
        raise ValueError(f"HTTP {status}: {text[:800]}")
    body = json.loads(text)
    if route == "v1":
        return body["predictions"], body.get("probabilities"), "probabilities" in body
    if route == "invocations":
        return body["predictions"], None, "probabilities" in body
    tensors = {t["name"]: t for t in body["outputs"]}
    predict = tensors["predict"]
    if predict["shape"] != [n]:
        raise ValueError(f"predict tensor of shape {predict['shape']} for {n} rows")
    if "predict_proba" not in tensors:
        return predict["data"], None, False
    flat, shape = tensors["predict_proba"]["data"], tensors["predict_proba"]["shape"]
    if len(shape) != 2 or shape[0] != n or len(flat) != shape[0] * shape[1]:
        raise ValueError(f"predict_proba tensor of shape {shape} for {n} rows")
    width = shape[1]
    return predict["data"], [flat[i * width : (i + 1) * width] for i in range(n)], True


def send_all(port: int, cases: dict[str, Case], jobs: list[Job]) -> dict[Job, Any]:
    """Every job through ``CLIENTS`` concurrent clients; per job the parsed answer or the
    exception. Jobs go out in order, so the clients hit one model and route at a time."""

    def work(connection: KeepAlive, job: Job) -> Any:
        body = json.dumps(cases[job.case].body(job.route, job.start, job.stop))
        status, text = connection.post(_url(job.route, job.case), body.encode())
        return _parse(job.route, status, text, job.stop - job.start)

    return dict(zip(jobs, run_jobs(port, jobs, CLIENTS, work), strict=True))


def _assemble(case: Case, route: str, batch: int, results: dict[Job, Any]) -> Answer:
    answer = Answer()
    for start in range(0, case.rows, batch):
        job = Job(case.name, route, batch, start, min(start + batch, case.rows))
        got = results[job]
        if isinstance(got, Exception):
            answer.errors.append(f"rows {job.start}-{job.stop - 1}: {type(got).__name__}: {got}")
            continue
        predictions, probabilities, key_seen = got
        answer.predictions.extend(predictions)
        answer.probabilities.extend(probabilities or [])
        answer.proba_key_seen |= key_seen
    return answer


def _cli(case: Case, work: Path, registry: Path) -> Answer:
    path = cli_input(case, work / case.name)
    result = run_cli("predict", case.name, "--input", str(path), "--registry", str(registry))
    answer = Answer()
    if result.returncode != 0:
        answer.errors.append(f"{path.name}: exit {result.returncode}: {result.stderr[-1500:]}")
        return answer
    for line in result.stdout.splitlines():
        row = json.loads(line)
        answer.predictions.append(row["prediction"])
        if "probabilities" in row:
            answer.proba_key_seen = True
            answer.probabilities.append(row["probabilities"])
    return answer


def _register_then_predict(case: Case, work: Path, registry: Path) -> Answer:
    register(case, work, registry)
    return _cli(case, work, registry)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("compatibility")
    registry = work / "models"
    registry.mkdir()
    cases: dict[str, Case] = {}
    cli: dict[str, Future[Answer]] = {}
    # Each family is registered (then scored by modelserve predict, which needs no server) as
    # soon as it is fitted, so both cores stay busy; one server then serves all of them.
    with ThreadPoolExecutor(2) as pool:
        for family in FAMILIES:
            case = cases[family.name] = fit(family)
            cli[case.name] = pool.submit(_register_then_predict, case, work, registry)
        registered = wait(list(cli.values()))
        failed = [f.exception() for f in registered.done if f.exception() is not None]
        assert not failed, failed[0]
    env = {
        "MODELSERVE_MODEL": FAMILIES[0].name,
        "MODELSERVE_POLL_INTERVAL_S": "0",
        "MODELSERVE_PREDICTION_LOG": str(work / "predictions.db"),
    }
    with Server(registry, workdir=work, env=env) as server:
        server.wait_ready(timeout=120)
        jobs = [
            Job(case.name, route, batch, start, min(start + batch, case.rows))
            for case in cases.values()
            for route in ("v1", "v2", "invocations")
            for batch in BATCHES
            for start in range(0, case.rows, batch)
        ]
        results = send_all(server.port, cases, jobs)
        answers = {
            (case.name, f"{route}-{batch}"): _assemble(case, route, batch, results)
            for case in cases.values()
            for route in ("v1", "v2", "invocations")
            for batch in BATCHES
        }
        for name, future in cli.items():
            answers[(name, "cli")] = future.result()
        # Parsed once: the exposition of 32 models takes a while to parse.
        counts = samples(
            httpx.get(server.url + "/metrics", timeout=10).text, "modelserve_batch_size_count"
        )
        calls = {
            name: sum(s.value for s in counts if s.labels.get("model") == name) for name in cases
        }
        scorers = {
            name: httpx.get(f"{server.url}/models/{name}", timeout=10).json()["scorer"]
            for name in cases
        }
        yield World(cases, answers, registry, server.logs(), calls, scorers)


def _params() -> list[Any]:
    params = []
    for name in NAMES:
        for route in ROUTES:
            params.append(pytest.param(name, route, id=f"{name}-{route}"))
    return params


def _server_errors(log: str) -> str:
    """The server log's tracebacks and error lines, the last ones."""
    lines = log.splitlines()
    picked = [i for i, ln in enumerate(lines) if "Traceback" in ln or " ERROR " in ln]
    if not picked:
        return "(no error in the server log)"
    start = picked[-1] if len(picked) < 2 else picked[-2]
    return "\n".join(lines[start : start + 60])


@pytest.mark.parametrize(("family", "route"), _params())
def test_route_answers_exactly_what_the_model_returns(
    world: World, family: str, route: str
) -> None:
    case, answer = world.cases[family], world.answers[(family, route)]
    if answer.errors:
        pytest.fail(
            f"{family} {route}: {len(answer.errors)} failed request(s); first: "
            f"{answer.errors[0]}\nserver log:\n{_server_errors(world.server_log)}"
        )
    predictions, probabilities = case.expected(route)
    found = [mismatch(predictions, answer.predictions, "predictions")]
    if probabilities is not None and not route.startswith("invocations"):
        found.append(mismatch(probabilities, answer.probabilities, "probabilities"))
    if probabilities is None:
        assert not answer.proba_key_seen, f"{family} has no predict_proba, {route} sent some"
    problems = [p for p in found if p is not None]
    assert not problems, f"{family} {route}: " + " | ".join(problems)


def test_batches_formed(world: World) -> None:
    """16 concurrent clients make the batcher merge requests of the families whose rows do not
    depend on the call they are in: fewer model calls than requests."""
    merged = [c for c in world.cases.values() if not c.family.blas]
    requests = sum(3 * sum(math.ceil(c.rows / b) for b in BATCHES) for c in merged)
    calls = sum(world.model_calls[c.name] for c in merged)
    print(f"{calls:.0f} model calls for {requests} requests of {len(merged)} families")
    assert 0 < calls < requests * 0.9, (calls, requests)


def test_tree_ensembles_answered_by_their_compiled_scorers(world: World) -> None:
    """The exact answers above of every forest and boosting family came from compiled trees."""
    ensembles = {
        name
        for name, case in world.cases.items()
        if compiles(
            case.estimator.steps[-1][1] if isinstance(case.estimator, Pipeline) else case.estimator
        )
    }
    assert len(ensembles) >= 10, ensembles
    assert {name: world.scorers[name] for name in ensembles} == dict.fromkeys(
        ensembles, "compiled-trees"
    )
    assert "compiled trees not used" not in world.server_log


@pytest.mark.parametrize("family", NAMES)
def test_registered_with_metrics_and_promoted(world: World, family: str) -> None:
    aliases = json.loads((world.registry / family / "aliases.json").read_text())
    version = aliases["aliases"]["production"]
    metadata = json.loads((world.registry / family / version / "metadata.json").read_text())
    wanted = "accuracy" if world.cases[family].family.task == "classification" else "r2"
    assert wanted in metadata["metrics"], metadata["metrics"]
    assert metadata["input_format"] == world.cases[family].input_format
