"""Loading training data (CSV or a bundled scikit-learn data set), typing and splitting it.

A model takes a float64 matrix (input_format "array": every feature a number, none nullable,
today's case) or a DataFrame with typed columns (input_format "frame"). ``feature_schema``
decides each feature's kind and dtype, ``split`` returns the matching model input:

| kind | nullable | frame column dtype | missing value |
|---|---|---|---|
| number | either | float64 | NaN |
| integer | no / yes | int64 / float64 | NaN |
| boolean | no / yes | bool / object (True, False) | None |
| string | either | object (str values) | None |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn import datasets
from sklearn.model_selection import train_test_split

from app.registry.metadata import FeatureKind, FeatureSpec, InputFormat, ModelMetadata, Value
from app.training import background
from app.training.reference import build_frame_reference, frame_fingerprint
from app.training.spec import SpecError, TrainSpec

SKLEARN_PREFIX = "sklearn:"
NUMERIC_KINDS: frozenset[FeatureKind] = frozenset({"number", "integer"})

Inputs = npt.NDArray[np.float64] | pd.DataFrame
"""What an estimator is fitted on and scores: a float64 matrix or a typed feature frame."""


@dataclass(frozen=True)
class Split:
    feature_names: list[str]
    X_train: npt.NDArray[np.float64]
    """The float matrix of an "array" split; for a "frame" split it has no columns."""
    X_test: npt.NDArray[np.float64]
    y_train: npt.NDArray[Any]
    y_test: npt.NDArray[Any]
    train: pd.DataFrame
    test: pd.DataFrame
    features: list[FeatureSpec] = field(default_factory=list)
    """Kinds, dtypes, nullability and (string features) the train split's categories."""
    input_format: InputFormat = "array"
    frame_train: pd.DataFrame | None = None
    """The typed feature frame of a "frame" split (None for "array")."""
    frame_test: pd.DataFrame | None = None

    @property
    def matrix_names(self) -> list[str]:
        """The columns of ``X_train``: every feature for "array", none for "frame"."""
        return self.feature_names if self.frame_train is None else []

    @property
    def inputs_train(self) -> Inputs:
        """What the estimator is fitted on: ``X_train`` or ``frame_train``."""
        return self.X_train if self.frame_train is None else self.frame_train

    @property
    def inputs_test(self) -> Inputs:
        return self.X_test if self.frame_test is None else self.frame_test

    def held_out_for(self, meta: ModelMetadata) -> Inputs:
        """The held-out rows as another version (production) takes them: ``inputs_test``
        when its features are these, else converted to its own input format. ValueError when
        it needs columns or types the table does not have (it cannot be compared then)."""

        if meta.input_format == self.input_format and _typing(meta.features) == _typing(
            self.features
        ):
            return self.inputs_test
        try:
            if meta.input_format == "array":
                return self.test[meta.feature_names].to_numpy(dtype=np.float64)
            return typed_frame(self.test, meta.features)
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"the held-out rows do not fit version {meta.version}: {exc}"
            ) from None

    def typed_fields(self, classification: bool) -> dict[str, Any]:
        """The metadata fields that follow from a "frame" split's typed data; none for an
        "array" split (``train.fitted_fields`` computes them from the matrices, as before)."""
        if self.frame_train is None or self.frame_test is None:
            return {}
        return {
            "features": [f.model_dump() for f in self.features],
            "input_format": "frame",
            "data_fingerprint": frame_fingerprint(self.frame_train, self.y_train),
            "example": example_row(self.frame_test),
            "background": background.frame_rows(self.frame_train),
            "reference": build_frame_reference(
                self.frame_train, self.y_train, self.features, classification
            ),
        }


def load_frame(spec: TrainSpec) -> pd.DataFrame:
    """The raw table, features and target column, exactly as the source has it (CSV columns
    ``data.kinds`` declares as strings are read as text: ``"007"`` keeps its zeros)."""
    source = spec.data.source
    if source.startswith(SKLEARN_PREFIX):
        dataset = source.removeprefix(SKLEARN_PREFIX)
        loader = getattr(datasets, f"load_{dataset}", None)
        if loader is None or not dataset.isidentifier():
            raise SpecError(f"data.source: scikit-learn has no bundled data set {dataset!r}")
        bunch = loader(as_frame=True)
        frame: pd.DataFrame = bunch.frame.rename(columns={"target": spec.data.target})
        return frame
    path = spec.data_path()
    text = {name: str for name, kind in spec.data.kinds.items() if kind == "string"}
    try:
        return pd.read_csv(path, dtype=text or None)
    except (OSError, ValueError) as exc:
        raise SpecError(f"data.source: cannot read CSV {path}: {exc}") from None


def feature_columns(spec: TrainSpec, frame: pd.DataFrame) -> list[str]:
    if spec.data.features is not None:
        return list(spec.data.features)
    return [str(c) for c in frame.columns if c != spec.data.target]


def infer_kind(series: pd.Series) -> FeatureKind:
    """The kind a column's values suggest: pandas dtype first, then the values of an object
    column (all booleans, all numbers); anything else is a string."""
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_integer_dtype(series):
        return "integer"
    if pd.api.types.is_float_dtype(series):
        return "number"
    present = series.dropna()
    if pd.api.types.is_object_dtype(series) and len(present):
        if all(isinstance(v, bool | np.bool_) for v in present):
            return "boolean"
        if all(isinstance(v, int | float | np.number) for v in present):
            return "number"
    return "string"


def _dtype(kind: FeatureKind, nullable: bool) -> str:
    if kind == "integer":
        return "float64" if nullable else "int64"
    if kind == "boolean":
        return "object" if nullable else "bool"
    return "object" if kind == "string" else "float64"


def input_format(features: Sequence[FeatureSpec]) -> InputFormat:
    """ "array" when every feature is a non-nullable float64 number (today's models)."""
    plain = all(f.kind == "number" and not f.nullable and f.dtype == "float64" for f in features)
    return "array" if plain else "frame"


def _typed(
    kinds: dict[str, FeatureKind], names: Sequence[str], spec: TrainSpec
) -> list[FeatureSpec]:
    nullable = set(spec.data.nullable)
    if all(kinds[n] in NUMERIC_KINDS for n in names) and not nullable & set(names):
        # Numbers only: a float64 matrix exactly as before (integer columns become floats).
        return [FeatureSpec(name=n) for n in names]
    return [
        FeatureSpec(
            name=n, kind=kinds[n], nullable=n in nullable, dtype=_dtype(kinds[n], n in nullable)
        )
        for n in names
    ]


def _declared_kind(
    spec: TrainSpec, name: str, production: ModelMetadata | None
) -> FeatureKind | None:
    if name in spec.data.kinds:
        return spec.data.kinds[name]
    for feature in production.features if production else []:
        if feature.name == name:
            return feature.kind
    return None


def declared_features(
    spec: TrainSpec, names: Sequence[str], production: ModelMetadata | None
) -> list[FeatureSpec]:
    """Features typed from the spec and production alone (undeclared columns are numbers)."""
    kinds = {n: _declared_kind(spec, n, production) or "number" for n in names}
    return _typed(kinds, names, spec)


def feature_schema(
    spec: TrainSpec, frame: pd.DataFrame, names: Sequence[str], production: ModelMetadata | None
) -> list[FeatureSpec]:
    """Each feature's kind (``data.kinds``, else production's, else inferred from ``frame``),
    nullability (``data.nullable``) and dtype. Categories are filled in by ``split``."""
    for column in [*spec.data.kinds, *spec.data.nullable]:
        if column not in names:
            raise SpecError(f"data: {column!r} is not a feature column")
    kinds: dict[str, FeatureKind] = {}
    for name in names:
        declared = _declared_kind(spec, name, production)
        if declared is None and name not in frame.columns:
            declared = "number"  # the missing column is reported by validation
        kinds[name] = declared or infer_kind(frame[name])
    return _typed(kinds, names, spec)


def _objects(series: pd.Series, values: list[Any]) -> pd.Series:
    return pd.Series(values, index=series.index, dtype=object, name=series.name)


def _typed_column(series: pd.Series, feature: FeatureSpec) -> pd.Series:
    if feature.kind == "string":
        missing = series.isna().to_numpy()
        text = series.astype(object).to_numpy()
        return _objects(series, [None if m else str(v) for v, m in zip(text, missing, strict=True)])
    if feature.kind == "boolean":
        flags = series.astype("boolean")
        if feature.dtype == "bool":
            return flags.astype(bool)
        missing = flags.isna().to_numpy()
        return _objects(
            series,
            [None if m else bool(v) for v, m in zip(flags.astype(object), missing, strict=True)],
        )
    numbers = pd.to_numeric(series).astype(np.float64)
    return numbers.astype(np.int64) if feature.dtype == "int64" else numbers


def typed_frame(frame: pd.DataFrame, features: Sequence[FeatureSpec]) -> pd.DataFrame:
    """The feature columns of a validated table, in feature order, with the table's dtypes."""
    return pd.DataFrame({f.name: _typed_column(frame[f.name], f) for f in features})


def example_row(frame: pd.DataFrame) -> list[Value]:
    """The first row as plain JSON values (missing -> None)."""
    row = frame.iloc[0].tolist()
    return [None if pd.isna(v) else v.item() if isinstance(v, np.generic) else v for v in row]


def _with_categories(features: Sequence[FeatureSpec], train: pd.DataFrame) -> list[FeatureSpec]:
    """String features with the sorted values of the train split as their categories."""
    return [
        f.model_copy(update={"categories": sorted({str(v) for v in train[f.name].dropna()})})
        if f.kind == "string"
        else f
        for f in features
    ]


def _typing(features: Sequence[FeatureSpec]) -> list[tuple[str, str, str, bool]]:
    return [(f.name, f.kind, f.dtype, f.nullable) for f in features]


def split(
    spec: TrainSpec, frame: pd.DataFrame, features: Sequence[str] | Sequence[FeatureSpec]
) -> Split:
    """A seeded (and for classifiers stratified) hold-out split of a validated frame.

    ``features`` as names (or specs of an "array" schema) give the float matrices as always;
    specs of a "frame" schema (``feature_schema``) also give the typed frames.
    """
    specs = [FeatureSpec(name=f) if isinstance(f, str) else f for f in features]
    names = [f.name for f in specs]
    fmt = input_format(specs)
    y = frame[spec.data.target].to_numpy()
    stratify = y if spec.task == "classification" and spec.split.stratify else None
    index = np.arange(len(frame))
    idx_train, idx_test = train_test_split(
        index, test_size=spec.split.test_size, random_state=spec.seed, stratify=stratify
    )
    if fmt == "array":
        X = frame[names].to_numpy(dtype=np.float64)
        typed_train = typed_test = None
    else:
        X = np.empty((len(frame), 0), dtype=np.float64)
        typed = typed_frame(frame, specs)
        typed_train, typed_test = typed.iloc[idx_train], typed.iloc[idx_test]
        specs = _with_categories(specs, typed_train)
    return Split(
        feature_names=names,
        X_train=X[idx_train],
        X_test=X[idx_test],
        y_train=y[idx_train],
        y_test=y[idx_test],
        train=frame.iloc[idx_train],
        test=frame.iloc[idx_test],
        features=specs,
        input_format=fmt,
        frame_train=typed_train,
        frame_test=typed_test,
    )
