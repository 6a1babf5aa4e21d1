"""Typed training data: a mixed CSV (strings, booleans, integers, floats, empty cells) is
validated per column kind and split into a typed frame, while numeric specs keep today's
float path exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OrdinalEncoder

from app.registry.metadata import FeatureSpec, ModelMetadata
from app.registry.store import Registry
from app.training import data
from app.training.reference import data_fingerprint
from app.training.spec import SpecError, TrainSpec, load_spec
from app.training.validate import ValidationReport, table_schema, validate
from tests.helpers.lifecycle import DEFAULT_SPEC, NAME

ROWS = 400
CITIES = ["lyon", "nice", "paris"]


def _mixed(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "city": rng.choice(CITIES, size=rows, p=[0.3, 0.2, 0.5]).astype(object),
            "member": rng.random(rows) < 0.4,
            "visits": rng.integers(0, 10_000, size=rows),
            "amount": rng.normal(50.0, 10.0, size=rows).round(2),
            "target": rng.integers(0, 2, size=rows),
        }
    )
    # empty cells: ~5 % of city, member and amount
    for column in ("city", "member", "amount"):
        frame[column] = frame[column].astype(object).where(rng.random(rows) > 0.05, None)
    return frame


def _spec(tmp_path: Path, frame: pd.DataFrame, **changes: Any) -> TrainSpec:
    csv = tmp_path / "mixed.csv"
    frame.to_csv(csv, index=False)
    doc: dict[str, Any] = {
        "name": "shop",
        "data": {"source": csv.name, "nullable": ["city", "member", "amount"]},
        "estimator": {"class": "sklearn.ensemble.HistGradientBoostingClassifier"},
        "validation": {"max_missing_share": 0.1},
    }
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        doc[section][key] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_spec(path)


def _check(
    spec: TrainSpec, production: ModelMetadata | None = None
) -> tuple[pd.DataFrame, list[FeatureSpec], ValidationReport]:
    frame = data.load_frame(spec)
    names = data.feature_columns(spec, frame)
    features = data.feature_schema(spec, frame, names, production)
    return frame, features, validate(table_schema(spec, features, production), frame)


def _failures(report: ValidationReport) -> list[tuple[str, str]]:
    return [(f.column, f.check) for f in report.failures]


def _production(features: list[FeatureSpec]) -> ModelMetadata:
    return ModelMetadata.model_validate(
        {
            "name": "shop",
            "version": "1",
            "created_at": "2024-01-01T00:00:00Z",
            "sha256": "0",
            "python_version": "3.11",
            "sklearn_version": "1.5",
            "task": "classification",
            "features": [f.model_dump() for f in features],
            "classes": [0, 1],
            "data_fingerprint": "x",
            "input_format": "frame",
        }
    )


def test_a_mixed_csv_validates_and_splits_into_a_typed_frame(tmp_path: Path) -> None:
    spec = _spec(tmp_path, _mixed())
    frame, features, report = _check(spec)
    assert report.ok, report.table()
    kinds = {f.name: (f.kind, f.nullable, f.dtype) for f in features}
    assert kinds == {
        "city": ("string", True, "object"),
        "member": ("boolean", True, "object"),
        "visits": ("integer", False, "int64"),
        "amount": ("number", True, "float64"),
    }
    # what training did before typed features: every feature a non-null float64
    old = validate(table_schema(spec, [f.name for f in features], None), frame)
    assert ("city", "coerce_dtype('float64')") in _failures(old)

    split = data.split(spec, frame, features)
    assert split.input_format == "frame" and split.X_train.shape == (len(split.train), 0)
    assert split.frame_train is not None and split.frame_test is not None
    assert split.inputs_train is split.frame_train and split.matrix_names == []
    assert list(split.frame_train.columns) == ["city", "member", "visits", "amount"]
    dtypes = {c: str(t) for c, t in split.frame_train.dtypes.items()}
    assert dtypes == {"city": "object", "member": "object", "visits": "int64", "amount": "float64"}
    city = split.frame_train["city"].tolist()
    assert None in city and set(city) - {None} == set(CITIES)
    assert set(split.frame_train["member"].tolist()) == {True, False, None}
    assert split.frame_train["amount"].isna().any()
    assert next(f for f in split.features if f.name == "city").categories == CITIES

    fields = split.typed_fields(classification=True)
    assert fields["input_format"] == "frame"
    assert set(fields["reference"].features) == {"member", "visits", "amount"}
    city_ref = fields["reference"].categorical["city"]
    assert city_ref.categories == ["paris", "lyon", "nice"]  # by frequency
    assert len(city_ref.proportions) == 4 and sum(city_ref.proportions) == pytest.approx(1.0)
    assert city_ref.proportions[-1] > 0  # the missing cities
    assert len(fields["example"]) == 4
    # production is scored on the same held-out rows, in its own input format
    assert split.held_out_for(_production(split.features)) is split.frame_test
    numeric = _production([FeatureSpec(name="visits")]).model_copy(update={"input_format": "array"})
    held_out = split.held_out_for(numeric)
    assert isinstance(held_out, np.ndarray) and held_out.dtype == np.float64
    assert held_out[:, 0].tolist() == split.test["visits"].astype(float).tolist()
    with pytest.raises(ValueError, match="do not fit version 1"):
        split.held_out_for(numeric.model_copy(update={"features": [FeatureSpec(name="colour")]}))
    # the estimator the spec names fits the typed frame as it is
    model = _fit_pipeline(split)
    assert model.predict(split.inputs_test).shape == (len(split.test),)


def _fit_pipeline(split: data.Split) -> Any:
    """A pipeline that fits the typed frame as it is: strings and nullable booleans encoded."""
    encode = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="missing"),
        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
    )
    columns = ColumnTransformer([("strings", encode, ["city", "member"])], remainder="passthrough")
    model = make_pipeline(columns, HistGradientBoostingClassifier(max_iter=20))
    return model.fit(split.inputs_train, split.y_train)


def test_too_many_missing_values_fail_naming_the_column(tmp_path: Path) -> None:
    frame = _mixed()
    frame["amount"] = frame["amount"].where(np.arange(ROWS) % 3 != 0, None)  # ~36 % missing
    frame.loc[5, "visits"] = None  # not nullable at all
    _, _, report = _check(_spec(tmp_path, frame))
    failures = _failures(report)
    assert ("amount", "missing_share(<= 10%)") in failures
    assert ("visits", "not_nullable") in failures
    assert {column for column, _ in failures} == {"amount", "visits"}
    amount = next(f for f in report.failures if f.column == "amount")
    assert amount.count == int(frame["amount"].isna().sum())  # the missing rows are listed


def test_too_many_unseen_categories_fail_naming_the_column(tmp_path: Path) -> None:
    frame = _mixed()
    production = _production(
        [
            FeatureSpec(
                name="city", kind="string", dtype="object", nullable=True, categories=CITIES
            ),
            FeatureSpec(name="member", kind="boolean", dtype="object", nullable=True),
            FeatureSpec(name="visits", kind="integer", dtype="int64"),
            FeatureSpec(name="amount", nullable=True),
        ]
    )
    few = frame.copy()
    few.loc[:7, "city"] = "marseille"  # 8 of ~380 present values: ~2 %
    _, features, report = _check(_spec(tmp_path, few), production)
    assert report.ok, report.table()
    assert [f.kind for f in features] == ["string", "boolean", "integer", "number"]

    many = frame.copy()
    many.loc[:59, "city"] = "marseille"  # ~16 %
    _, _, report = _check(_spec(tmp_path, many), production)
    assert _failures(report) == [
        ("city", "unseen_categories(share <= 5% of 3 production categories)")
    ]
    assert report.failures[0].examples[0] == "marseille"
    loose = _spec(tmp_path, many, **{"validation.max_unseen_share": 0.2})
    assert _check(loose, production)[2].ok


def test_kinds_are_checked_per_column(tmp_path: Path) -> None:
    frame = _mixed()
    frame["visits"] = frame["visits"].astype(float)
    frame.loc[3, "visits"] = 2.5
    frame["member"] = frame["member"].astype(object)
    frame.loc[4, "member"] = "maybe"
    spec = _spec(tmp_path, frame, **{"data.kinds": {"visits": "integer", "member": "boolean"}})
    failures = _failures(_check(spec)[2])
    assert ("visits", "integer") in failures
    assert ("member", "coerce_dtype('boolean')") in failures


def test_declared_string_columns_are_read_as_text(tmp_path: Path) -> None:
    frame = _mixed().assign(zip=["06000", "75001"] * (ROWS // 2))
    spec = _spec(tmp_path, frame, **{"data.kinds": {"zip": "string"}})
    loaded, features, report = _check(spec)
    assert report.ok, report.table()
    assert set(loaded["zip"]) == {"06000", "75001"}
    assert next(f for f in features if f.name == "zip").kind == "string"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"data.nullable": ["target"]}, "'target' is the target"),
        ({"data.kinds": {"city": "text"}}, "kinds.city"),
        ({"validation.max_missing_share": 1.5}, "max_missing_share"),
        ({"validation.max_unseen_share": -0.1}, "max_unseen_share"),
    ],
)
def test_typed_spec_fields_are_validated(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        _spec(tmp_path, _mixed(20), **changes)


def test_a_nullable_column_must_be_a_feature(tmp_path: Path) -> None:
    spec = _spec(tmp_path, _mixed(20), **{"data.nullable": ["city", "colour"]})
    with pytest.raises(SpecError, match="'colour' is not a feature column"):
        _check(spec)


def test_the_numeric_default_spec_is_unchanged() -> None:
    spec = load_spec(DEFAULT_SPEC)
    assert spec.data.kinds == {} and spec.data.nullable == []
    assert spec.validation.max_missing_share == 0.0
    frame = data.load_frame(spec)
    names = data.feature_columns(spec, frame)
    committed = Registry(DEFAULT_SPEC.parent.parent).metadata(NAME, "1")
    for production in (None, committed):
        features = data.feature_schema(spec, frame, names, production)
        assert features == [FeatureSpec(name=n) for n in names]  # float64 numbers, not nullable
        assert data.input_format(features) == "array"
        assert validate(table_schema(spec, features, production), frame).ok
        assert validate(table_schema(spec, names, production), frame).ok

        split = data.split(spec, frame, features)
        by_name = data.split(spec, frame, names)
        # today's split, written out: the float matrix, a seeded stratified split
        X = frame[names].to_numpy(dtype=np.float64)
        y = frame[spec.data.target].to_numpy()
        train, test = train_test_split(
            np.arange(len(frame)), test_size=0.2, random_state=spec.seed, stratify=y
        )
        for s in (split, by_name):
            assert s.input_format == "array" and s.frame_train is None
            assert s.inputs_train is s.X_train and s.matrix_names == names
            assert s.typed_fields(classification=True) == {}
            assert np.array_equal(s.X_train, X[train]) and np.array_equal(s.X_test, X[test])
            assert np.array_equal(s.y_train, y[train]) and np.array_equal(s.y_test, y[test])
        assert data_fingerprint(split.X_train, split.y_train) == committed.data_fingerprint
        assert [float(v) for v in split.X_test[0]] == committed.example
