"""``app.training.register``: schema inference, byte-for-byte storage, refusals, in-process."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from app.registry.metadata import FeatureSpec
from app.registry.store import Registry
from app.training.register import RegisterError, Request, parse_gates, run
from app.training.schema_infer import SchemaError, infer_features, input_format
from tests.helpers.mixed import city_income_pipeline

CITIES = ["oslo", "paris", "rome"]
COLOURS = ["blue", "green", "red"]


def _tree(root: Path) -> dict[str, str]:
    """Every path under the registry (directories too), with each file's sha256."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
        for p in sorted(root.rglob("*"))
    }


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """A notebook's table: strings with gaps, floats with gaps, booleans, integers, a label."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "city": pd.Series(rng.choice(CITIES, n), dtype=object),
            "income": rng.normal(50, 10, n),
            "member": rng.choice([True, False], n),
            "age": rng.integers(18, 80, n),
        }
    )
    frame.loc[::11, "city"] = None
    frame.loc[::13, "income"] = np.nan
    frame["label"] = ((frame.income.fillna(50) > 50) | (frame.city == "oslo")).astype(int)
    return frame


def _pipeline(frame: pd.DataFrame) -> Pipeline:
    model = city_income_pipeline()
    return model.fit(frame.drop(columns="label"), frame["label"])


def _by_name(features: list[FeatureSpec]) -> dict[str, FeatureSpec]:
    return {f.name: f for f in features}


# ---- schema inference ----------------------------------------------------------------------


def test_numeric_array_model_without_and_with_a_sample() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    assert input_format(model) == "array"
    bare = infer_features(model)
    assert [(f.name, f.kind, f.dtype, f.nullable) for f in bare] == [
        (f"x{i}", "number", "float64", False) for i in range(3)
    ]
    sample = pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=0)
    assert [f.name for f in infer_features(model, sample, "y")] == ["a", "b", "c"]
    with pytest.raises(SchemaError, match=r"takes 3 features.*a, b, c, d"):
        infer_features(model, sample.assign(d=1.0), "y")


def test_dataframe_model_takes_its_fitted_names_and_refuses_other_columns() -> None:
    frame = pd.DataFrame({"width": [1.0, 2.0, 3.0, 4.0], "height": [2.0, 1.0, 4.0, 3.0]})
    model = LinearRegression().fit(frame, frame.width * 2)
    assert input_format(model) == "frame"
    assert [f.name for f in infer_features(model)] == ["width", "height"]
    reordered = frame[["height", "width"]].assign(area=1.0)
    assert [f.name for f in infer_features(model, reordered, "area")] == ["width", "height"]
    with pytest.raises(SchemaError, match=r"missing feature column\(s\) height"):
        infer_features(model, frame[["width"]])
    with pytest.raises(SchemaError, match=r"does not take: depth"):
        infer_features(model, frame.assign(depth=0.0))


def test_column_transformer_kinds_and_categories_from_encoder_and_sample() -> None:
    frame = pd.DataFrame(
        {"colour": ["red", "blue", "red", "green"] * 10, "size": np.arange(40.0)}
    ).assign(y=[0, 1] * 20)
    pre = ColumnTransformer(
        [("cat", OneHotEncoder(), ["colour"]), ("num", StandardScaler(), ["size"])]
    )
    model = make_pipeline(pre, LogisticRegression()).fit(frame[["colour", "size"]], frame.y)
    # Without a sample: the encoder says colour is a string and knows its categories.
    colour, size = infer_features(model)
    assert (colour.kind, colour.dtype, colour.categories) == ("string", "object", COLOURS)
    assert (size.kind, size.dtype, size.categories, size.nullable) == (
        "number",
        "float64",
        None,
        False,
    )
    # With one: the sample's dtypes and values (a subset of training's categories here).
    colour, size = infer_features(model, frame.iloc[:2], "y")
    assert colour.categories == COLOURS  # the encoder's, with the sample's two
    assert (size.kind, size.dtype) == ("number", "float64")


def test_hist_gradient_boosting_takes_missing_values() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 2))
    X[::5, 1] = np.nan
    y = (np.nan_to_num(X[:, 0]) > 0).astype(int)
    hgb = HistGradientBoostingClassifier(max_iter=10).fit(X, y)
    assert all(f.nullable for f in infer_features(hgb))  # allow_nan: no missing value needed
    logistic = LogisticRegression().fit(np.nan_to_num(X), y)
    assert not any(f.nullable for f in infer_features(logistic))


def test_pipeline_schema_booleans_integers_nulls_and_imputers() -> None:
    frame = _frame()
    model = _pipeline(frame)
    features = _by_name(infer_features(model, frame, "label"))
    assert list(features) == ["city", "income", "member", "age"]
    city, income, member, age = (features[n] for n in ("city", "income", "member", "age"))
    assert (city.kind, city.dtype, city.nullable, city.categories) == (
        "string",
        "object",
        True,
        CITIES,
    )
    assert (income.kind, income.dtype, income.nullable) == ("number", "float64", True)
    assert (member.kind, member.dtype, member.nullable) == ("boolean", "bool", False)
    # age has no gap in the sample, but its branch imputes: a request may leave it out.
    assert (age.kind, age.dtype, age.nullable) == ("integer", "int64", True)


# ---- the library run -----------------------------------------------------------------------


def _artifact(tmp_path: Path, model: Any, name: str = "model.joblib") -> Path:
    path = tmp_path / name
    joblib.dump(model, path)
    return path


def _sample(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "sample.csv"
    frame.to_csv(path, index=False)
    return path


def test_register_stores_the_input_bytes_and_the_schema(tmp_path: Path) -> None:
    frame = _frame()
    artifact = _artifact(tmp_path, _pipeline(frame))
    registry = Registry(tmp_path / "models")
    request = Request("customers", artifact, _sample(tmp_path, frame), "label", promote=True)
    outcome = run(request, registry)
    assert (outcome.status, outcome.version, outcome.promoted) == ("registered", "1", True)
    stored = tmp_path / "models" / "customers" / "1" / "model.joblib"
    assert stored.read_bytes() == artifact.read_bytes()
    meta = registry.metadata("customers", "1")
    assert meta.sha256 == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert meta.input_format == "frame" and meta.target == "label" and meta.classes == [0, 1]
    assert meta.metrics["accuracy"] > 0.85 and meta.data_fingerprint.startswith("sha256:")
    assert set(meta.reference.features) == {"income", "member", "age"}
    assert set(meta.reference.categorical) == {"city"}
    assert set(meta.reference.class_ratio) == {"0", "1"}
    assert meta.model_extra is not None
    assert meta.model_extra["source"] == {"kind": "joblib", "path": str(artifact)}
    assert registry.alias_history("customers")[-1]["reason"] == "register"
    assert (stored.parent / "MODEL_CARD.md").read_text().startswith("# customers version 1")


def test_register_without_a_sample_builds_the_example_from_the_schema(tmp_path: Path) -> None:
    frame = _frame()
    registry = Registry(tmp_path / "models")
    outcome = run(Request("customers", _artifact(tmp_path, _pipeline(frame))), registry)
    assert outcome.status == "registered" and outcome.metrics == {} and outcome.gates == []
    assert any("no --sample" in note and "drift" in note for note in outcome.notes)
    meta = registry.metadata("customers", "1")
    assert meta.example == ["oslo", 0.0, 0.0, 0.0]
    assert meta.reference.features == {}
    assert meta.data_fingerprint == f"sha256:{meta.sha256}"


def test_conversion_to_skops_passes_the_trust_check_and_predicts_the_same(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 4))
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, X[:, 0] > 0)
    artifact = _artifact(tmp_path, model, "model.pkl")
    registry = Registry(tmp_path / "models")
    outcome = run(Request("converted", artifact, fmt="skops"), registry)
    assert outcome.status == "registered"
    loaded = registry.load("converted", "1")
    assert loaded.metadata.format == "skops"
    assert np.array_equal(loaded.estimator.predict(X), model.predict(X))
    assert loaded.metadata.model_extra is not None
    converted = loaded.metadata.model_extra["converted_from"]
    assert converted == {
        "format": "joblib",
        "sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(),
    }


def _refusal(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (
            lambda t, m, f: Request("x", _refusal(t, "bad.joblib", b"not a pickle")),
            "cannot unpickle",
        ),
        (
            lambda t, m, f: Request("x", _refusal(t, "cut.pkl", m.read_bytes()[:300])),
            "cannot unpickle",
        ),
        (
            lambda t, m, f: Request("x", _artifact(t, {"not": "a model"}, "dict.pkl")),
            "has no predict",
        ),
        (
            lambda t, m, f: Request("x", m, _sample(t, f.drop(columns="age")), "label"),
            r"missing feature column\(s\) age",
        ),
        (lambda t, m, f: Request("x", m, _sample(t, f)), "does not take: label"),
        (lambda t, m, f: Request("x", m, gates=("accuracy>=0.9",)), "--gate needs"),
        (lambda t, m, f: Request("../x", m), "model name"),
    ],
)
def test_refusals_write_nothing(tmp_path: Path, make: Any, error: str) -> None:
    frame = _frame()
    model_path = _artifact(tmp_path, _pipeline(frame))
    registry = Registry(tmp_path / "models")
    run(Request("existing", model_path), registry)
    before = _tree(registry.root)
    with pytest.raises(RegisterError, match=error):
        run(make(tmp_path, model_path, frame), registry)
    assert _tree(registry.root) == before


def test_failing_gate_and_unknown_labels_are_outcomes_that_write_nothing(tmp_path: Path) -> None:
    frame = _frame()
    artifact = _artifact(tmp_path, _pipeline(frame))
    registry = Registry(tmp_path / "models")
    before = _tree(registry.root)
    gated = run(
        Request(
            "customers", artifact, _sample(tmp_path, frame), "label", gates=("accuracy>=0.999",)
        ),
        registry,
    )
    assert gated.status == "gate_failed" and gated.version is None
    assert [(g.rule, g.ok) for g in gated.gates] == [("accuracy >= 0.999", False)]
    relabelled = frame.assign(label=frame.label.map({0: 0, 1: 7}))
    checked = run(Request("customers", artifact, _sample(tmp_path, relabelled), "label"), registry)
    assert checked.status == "validation_failed"
    assert [f.column for f in checked.validation.failures] == ["label"]
    assert _tree(registry.root) == before


def test_gate_rules_are_parsed_against_the_metric_table() -> None:
    assert parse_gates(("accuracy>=0.9", "roc_auc >= 0.8"), "classification") == {
        "accuracy": 0.9,
        "roc_auc": 0.8,
    }
    assert parse_gates(("rmse<=3.5",), "regression") == {"rmse": 3.5}
    for rule in ("accuracy<=0.9", "rmse<=1", "accuracy>=high", "accuracy"):
        with pytest.raises(RegisterError, match="--gate"):
            parse_gates((rule,), "classification")
