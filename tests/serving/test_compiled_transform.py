"""A pipeline's transforming steps compiled: typed rows become the final step's matrix without a
DataFrame, and every answer stays scikit-learn's own, bit for bit.

Each prefix kind (one-hot and ordinal encoders, passthrough, drop, scaler, the imputer's
strategies, plain pipeline chains) is fitted on a frame with nullable strings, int64, bool and
nullable floats, registered, loaded as the server loads it, and must be served by the compiled
transform (``GET /models/{name}`` says ``"transform": "compiled"``); held-out rows with missing
values and unknown categories, in requests of 1 and of 50, get ``predict`` and
``predict_proba`` of the estimator in-process on the DataFrame scikit-learn's path builds. An
unknown category under ``handle_unknown="error"`` gets scikit-learn's own error. A compiled
transform one category off is refused at load (one warning) and scikit-learn's transform serves.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from app.config import Settings
from app.registry.store import Registry
from app.serving import prefixprobe
from app.serving.contract import InputContract, TypedRows, model_input
from app.serving.prefixcompile import compile_prefix
from app.serving.runner import ServedModel
from app.training.schema_infer import infer_features
from app.training.train import class_labels, environment
from tests.helpers.prefixes import one_category_off

STRINGS = ["city", "plan"]
NUMBERS = ["age", "income", "score"]


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    city = rng.choice(["paris", "lyon", "nice", "lille"], n).astype(object)
    plan = rng.choice(["basic", "pro", "team"], n).astype(object)
    plan[rng.random(n) < 0.1] = np.nan
    income = rng.normal(40_000, 12_000, n)
    income[rng.random(n) < 0.1] = np.nan
    frame = pd.DataFrame(
        {
            "city": city,
            "plan": plan,
            "age": rng.integers(18, 80, n).astype(np.int64),
            "income": income,
            "score": rng.normal(0, 1, n),
            "member": rng.random(n) < 0.4,
        }
    )
    signal = (city == "paris") + (frame["age"] - 50) / 20 + frame["score"] + frame["member"]
    return frame, (signal + rng.normal(0, 0.5, n) > 0.5).to_numpy().astype(np.int64)


def _held_out() -> pd.DataFrame:
    """Rows the models never saw: unknown and missing categories, missing incomes."""
    frame, _ = _frame(200, 1)
    frame.loc[::9, "city"] = "brest"
    frame.loc[4::17, "plan"] = "enterprise"
    frame.loc[5::13, "plan"] = np.nan
    frame.loc[2::7, "income"] = np.nan
    return frame


def _impute_scale(strategy: str) -> Pipeline:
    return make_pipeline(SimpleImputer(strategy=strategy, fill_value=7.25), StandardScaler())


PREFIXES: dict[str, Callable[[], Any]] = {
    "one-hot-passthrough": lambda: ColumnTransformer(
        [
            ("s", OneHotEncoder(handle_unknown="ignore"), STRINGS),
            ("n", "passthrough", ["age", "income", "score"]),
        ]
    ),
    "one-hot-dense-scaler-drop": lambda: ColumnTransformer(
        [
            (
                "s",
                OneHotEncoder(handle_unknown="infrequent_if_exist", sparse_output=False),
                STRINGS,
            ),
            ("n", StandardScaler(), ["age", "score"]),
            ("m", "passthrough", ["member"]),
        ],
        remainder="drop",
    ),
    "ordinal-imputers": lambda: ColumnTransformer(
        [
            (
                "s",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2
                ),
                STRINGS,
            ),
            ("mean", SimpleImputer(strategy="mean"), ["income"]),
            ("median", SimpleImputer(strategy="median"), ["score"]),
            ("drop", "drop", ["member"]),
        ],
        remainder="passthrough",
    ),
    "chains": lambda: ColumnTransformer(
        [
            (
                "s",
                make_pipeline(OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                STRINGS,
            ),
            ("frequent", _impute_scale("most_frequent"), ["income", "age"]),
            ("constant", _impute_scale("constant"), ["score"]),
        ]
    ),
}
FINALS: dict[str, Callable[[], Any]] = {
    "one-hot-passthrough": lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0),
    "one-hot-dense-scaler-drop": lambda: RandomForestClassifier(20, random_state=0),
    "ordinal-imputers": lambda: GradientBoostingClassifier(n_estimators=20, random_state=0),
    "chains": lambda: LogisticRegression(max_iter=500),
}


def _register(registry: Registry, name: str, pipeline: Pipeline, frame: pd.DataFrame) -> None:
    y = frame.pop("y")
    pipeline.fit(frame, y)
    features = infer_features(pipeline, frame)
    example = frame.iloc[0].to_dict()
    fields: dict[str, Any] = {
        **environment(),
        "task": "regression" if name.endswith("regressor") else "classification",
        "features": [f.model_dump() for f in features],
        "classes": None if name.endswith("regressor") else class_labels(pipeline),
        "data_fingerprint": "0" * 64,
        "example": [_json(example[f.name]) for f in features],
        "input_format": "frame",
        "reference": {},
    }
    meta = registry.register(name, pipeline, fields)
    registry.set_alias(name, "production", meta.version)


def _json(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and np.isnan(value) else value


def _fitted(registry: Registry, name: str, prefix: Any, final: Any) -> Pipeline:
    frame, y = _frame(400, 0)
    frame["y"] = y if name != "chain-regressor" else frame["score"] * 3.0
    _register(registry, name, Pipeline([("prefix", prefix), ("model", final)]), frame)
    estimator: Pipeline = registry.load(name, "1").estimator
    return estimator


def _served(registry: Registry, name: str) -> ServedModel:
    return ServedModel.load(registry, name, "1", Settings(), ThreadPoolExecutor(1))


def _records(frame: pd.DataFrame, columns: list[str]) -> list[list[Any]]:
    return [[_json(v) for v in row] for row in frame[columns].itertuples(index=False)]


def _assert_exact(served: ServedModel, estimator: Any, rows: list[list[Any]]) -> None:
    for batch in (1, 50):
        for start in range(0, len(rows), batch):
            typed = served.contract.records([list(r) for r in rows[start : start + batch]])
            assert isinstance(typed, TypedRows)
            answer = served.score(typed)
            frame = model_input(typed)  # what scikit-learn's path calls the model with
            assert answer.predictions.tolist() == estimator.predict(frame).tolist()
            if answer.probabilities is not None:
                expected = estimator.predict_proba(frame).tolist()
                assert repr(answer.probabilities.tolist()) == repr(expected)


@pytest.mark.parametrize("kind", list(PREFIXES))
def test_each_prefix_kind_is_compiled_and_answers_bit_for_bit(
    registry: Registry, kind: str
) -> None:
    estimator = _fitted(registry, kind, PREFIXES[kind](), FINALS[kind]())
    served = _served(registry, kind)
    assert served.transform == "compiled"
    columns = served.metadata.feature_names
    _assert_exact(served, estimator, _records(_held_out(), columns))


def test_a_plain_pipeline_chain_on_numbers_is_compiled(registry: Registry) -> None:
    prefix = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    final = HistGradientBoostingRegressor(max_iter=20, random_state=0)
    name = "chain-regressor"
    frame, _ = _frame(400, 0)
    frame = frame[NUMBERS].assign(y=frame["score"] * 3.0 + frame["age"])
    _register(registry, name, Pipeline([("prefix", prefix), ("model", final)]), frame)
    served = _served(registry, name)
    assert (served.transform, served.scorer) == ("compiled", "compiled-trees")
    estimator = registry.load(name, "1").estimator
    _assert_exact(served, estimator, _records(_held_out(), NUMBERS))


def test_an_unknown_category_the_encoder_refuses_gets_scikit_learns_error(
    registry: Registry,
) -> None:
    prefix = ColumnTransformer(
        [("s", OneHotEncoder(handle_unknown="error"), STRINGS), ("n", "passthrough", NUMBERS)]
    )
    estimator = _fitted(registry, "strict", prefix, HistGradientBoostingClassifier(max_iter=10))
    served = _served(registry, "strict")
    assert served.transform == "compiled"
    held_out = _held_out()
    known = held_out[held_out["city"] != "brest"]
    known = known[known["plan"].isin(["basic", "pro", "team"])]
    _assert_exact(served, estimator, _records(known, served.metadata.feature_names))
    unknown = served.contract.records(_records(held_out.iloc[:1], served.metadata.feature_names))
    with pytest.raises(ValueError, match="Found unknown categories") as raised:
        served.score(unknown)
    with pytest.raises(ValueError) as theirs:
        estimator.predict(model_input(unknown))
    assert str(raised.value) == str(theirs.value)


def test_a_compiled_transform_one_category_off_is_refused_at_load_and_sklearn_serves(
    registry: Registry,
    make_client: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    kind = "one-hot-passthrough"
    estimator = _fitted(registry, kind, PREFIXES[kind](), FINALS[kind]())
    real = compile_prefix
    monkeypatch.setattr(prefixprobe, "compile_prefix", lambda *a: one_category_off(real(*a)))
    client = make_client()
    summary = client.get(f"/models/{kind}").json()
    assert (summary["scorer"], summary["transform"]) == ("compiled-trees", "scikit-learn")
    log = capfd.readouterr().err.splitlines()
    refusals = [line for line in log if "compiled transform not used" in line]
    assert len(refusals) == 1, refusals  # one warning line, naming the version and why
    assert " WARNING " in refusals[0] and f"{kind} version 1:" in refusals[0]
    assert "differs from scikit-learn's transform" in refusals[0]
    meta = registry.metadata(kind, "1")
    contract = InputContract(meta.features, meta.input_format)
    rows = _records(_held_out(), meta.feature_names)
    for batch in (1, 50):
        for start in range(0, len(rows), batch):
            part = rows[start : start + batch]
            answer = client.post(f"/v1/models/{kind}:predict", json={"instances": part}).json()
            frame = model_input(contract.records([list(r) for r in part]))
            assert answer["predictions"] == estimator.predict(frame).tolist()
            assert answer["probabilities"] == estimator.predict_proba(frame).tolist()


def test_models_say_what_runs_their_transforming_steps(
    registry: Registry, make_client: Callable[..., TestClient]
) -> None:
    kind = "ordinal-imputers"
    _fitted(registry, kind, PREFIXES[kind](), FINALS[kind]())
    client = make_client()
    assert client.get(f"/models/{kind}").json()["transform"] == "compiled"
    assert client.get("/models/breast-cancer").json()["transform"] == "one-pass-linear"
    listed = {m["name"]: m["transform"] for m in client.get("/models").json()["models"]}
    assert listed[kind] == "compiled"
