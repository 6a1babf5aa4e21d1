"""The feature schema of an estimator trained elsewhere, from what it knows and a sample.

A model registered with ``modelserve register`` comes without a training spec, so its
``metadata.json`` features (names, kinds, categories, nullability, dtypes) are read off the
fitted estimator (``feature_names_in_``, ``n_features_in_``, a ColumnTransformer's column
lists and encoders' ``categories_``, scikit-learn's ``allow_nan`` tags, imputers), an MLflow
signature when there is one, and the sample's pandas dtypes and values. Pure functions: no
I/O, nothing printed; a mismatch is a ``SchemaError`` naming the columns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from app.registry.metadata import FeatureKind, FeatureSpec, InputFormat, Value
from app.training.data import infer_kind, typed_frame

Signature = Sequence[tuple[str, FeatureKind]]
DEFAULT_DTYPES: dict[FeatureKind, str] = {
    "number": "float64",
    "integer": "int64",
    "boolean": "bool",
    "string": "object",
}


class SchemaError(ValueError):
    """The estimator, its signature and the sample disagree about the features."""


@dataclass(frozen=True)
class Route:
    """What one input column passes through before the final estimator."""

    branch: list[Any]
    """Its ColumnTransformer branch (or the pipeline's steps, without one), in order."""
    columns: list[str]
    """Every column of that branch, in the order its encoders number them."""
    after: list[Any]
    """The pipeline's steps after the ColumnTransformer."""


def _some(names: Sequence[str]) -> str:
    more = f" and {len(names) - 8} more" if len(names) > 8 else ""
    return ", ".join(names[:8]) + more


def _flat(step: Any) -> list[Any]:
    if isinstance(step, Pipeline):
        return [s for _, inner in step.steps for s in _flat(inner)]
    return [] if step is None or isinstance(step, str) else [step]


def fitted_names(estimator: Any) -> list[str] | None:
    """``feature_names_in_`` of the estimator or a pipeline's first step: fitted on a frame."""
    first = estimator.steps[0][1] if isinstance(estimator, Pipeline) else None
    for obj in (estimator, first):
        names = getattr(obj, "feature_names_in_", None)
        if names is not None:
            return [str(n) for n in names]
    return None


TEXT_VECTORIZERS = (CountVectorizer, HashingVectorizer)  # TfidfVectorizer is a CountVectorizer
TEXT_FEATURE = "text"
"""A text model's one feature, named so when neither a signature nor a sample names it."""


def takes_text(estimator: Any) -> bool:
    """The model (or its pipeline's first step) is a text vectorizer, fitted on a sequence of
    strings, one document per row (``make_pipeline(TfidfVectorizer(), ...).fit(texts, y)``)."""
    steps = _flat(estimator)
    return bool(steps) and isinstance(steps[0], TEXT_VECTORIZERS)


def input_format(estimator: Any) -> InputFormat:
    if fitted_names(estimator) is not None:
        return "frame"
    return "text" if takes_text(estimator) else "array"


def feature_names(
    estimator: Any,
    sample: pd.DataFrame | None = None,
    target: str | None = None,
    signature: Signature | None = None,
) -> list[str]:
    """The estimator's names, else the signature's, the sample's columns, or ``x0..x{n-1}``."""
    fitted, signed = fitted_names(estimator), [n for n, _ in signature or ()] or None
    if fitted is None and takes_text(estimator):
        return _text_name(signed, sample, target)
    if fitted is not None and signed is not None and signed != fitted:
        raise SchemaError(
            f"the MLflow signature's inputs ({_some(signed)}) are not the estimator's "
            f"features ({_some(fitted)})"
        )
    columns = None if sample is None else [str(c) for c in sample.columns if c != target]
    n = getattr(estimator, "n_features_in_", None)
    names = fitted or signed or columns or ([f"x{i}" for i in range(n)] if n else None)
    if names is None:
        raise SchemaError("the estimator does not say what it takes (no n_features_in_)")
    if n is not None and len(names) != n:
        whose = "the sample's" if names is columns else "the MLflow signature's"
        raise SchemaError(
            f"the model takes {n} features, but {whose} {len(names)} columns are given: "
            f"{_some(names)}"
        )
    if columns is not None:
        missing = [c for c in names if c not in columns]
        extra = [c for c in columns if c not in names]
        problems = [f"missing feature column(s) {_some(missing)}"] if missing else []
        if extra:
            hint = "" if target else " (pass --target if one of them is the label)"
            problems.append(f"column(s) the model does not take: {_some(extra)}{hint}")
        if problems:
            raise SchemaError(
                f"the sample's columns do not match the model's {len(names)} features "
                f"({_some(names)}): {'; '.join(problems)}"
            )
    return names


def routes(estimator: Any, names: Sequence[str]) -> dict[str, Route | None]:
    """Each feature's route through the pipeline; None for a column the model drops."""
    steps = _flat(estimator)[:-1]
    if not steps or not isinstance(steps[0], ColumnTransformer):
        return {n: Route(steps, list(names), []) for n in names}
    out: dict[str, Route | None] = dict.fromkeys(names)
    for _, transformer, selected in getattr(steps[0], "transformers_", []):
        if isinstance(selected, str | int):
            selected = [selected]
        picked = list(names[selected] if isinstance(selected, slice) else selected)
        if picked and all(isinstance(c, bool | np.bool_) for c in picked):
            picked = [n for n, keep in zip(names, picked, strict=True) if keep]
        columns = [names[int(c)] if isinstance(c, int | np.integer) else str(c) for c in picked]
        if transformer != "drop":
            for col in columns:
                out[col] = Route(_flat(transformer), columns, steps[1:])
    return out


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def encoder_categories(route: Route, name: str) -> list[Any] | None:
    """The fitted categories of the first encoder on the column's branch, NaN included."""
    for step in route.branch:
        if not isinstance(step, OneHotEncoder | OrdinalEncoder) or not hasattr(step, "categories_"):
            continue
        names_in = [str(n) for n in getattr(step, "feature_names_in_", route.columns)]
        if name not in names_in or names_in.index(name) >= len(step.categories_):
            return None
        return list(step.categories_[names_in.index(name)])
    return None


def allows_nan(obj: Any) -> bool:
    """scikit-learn's ``allow_nan`` input tag (``get_tags`` from 1.6, ``_get_tags`` before)."""
    try:
        from sklearn.utils import get_tags
    except ImportError:  # scikit-learn < 1.6
        return bool(obj._get_tags().get("allow_nan", False))
    return bool(get_tags(obj).input_tags.allow_nan)


def passes_missing(route: Route | None, final: Any, name: str) -> bool:
    """A missing value survives every step until an imputer fills it or an encoder maps it,
    and reaches the final estimator only if that one takes NaN (HistGradientBoosting*)."""
    if route is None:
        return True  # the model drops the column: any value will do
    for step in [*route.branch, *route.after]:
        if type(step).__module__.startswith("sklearn.impute"):
            return True
        if isinstance(step, OneHotEncoder | OrdinalEncoder) and step in route.branch:
            cats = encoder_categories(Route([step], route.columns, []), name) or []
            known = any(_missing(c) for c in cats) or step.handle_unknown != "error"
            if not known:
                return False
            if isinstance(step, OneHotEncoder):
                return True
        elif not allows_nan(step):
            return False
    return allows_nan(final)


def _text_name(
    signed: list[str] | None, sample: pd.DataFrame | None, target: str | None
) -> list[str]:
    """The one column of a text model: the signature's or the sample's, else ``text``."""
    columns = None if sample is None else [str(c) for c in sample.columns if c != target]
    names = signed or columns or [TEXT_FEATURE]
    if len(names) != 1:
        whose = "MLflow signature's inputs" if signed else "sample's columns"
        hint = "" if target or signed else " (pass --target if one of them is the label)"
        raise SchemaError(
            f"the model takes one text per row (its first step is a text vectorizer), but the "
            f"{whose} are {len(names)}: {_some(names)}{hint}"
        )
    return names


def _text_feature(name: str) -> FeatureSpec:
    """Free text: a string, never missing (a vectorizer refuses NaN), no categories."""
    return FeatureSpec(name=name, dtype="object", kind="string", nullable=False)


def infer_features(
    estimator: Any,
    sample: pd.DataFrame | None = None,
    target: str | None = None,
    signature: Signature | None = None,
) -> list[FeatureSpec]:
    """One ``FeatureSpec`` per feature, in the order the model takes them."""
    names, fmt = feature_names(estimator, sample, target, signature), input_format(estimator)
    if fmt == "text":
        return [_text_feature(names[0])]
    paths, final, signed = routes(estimator, names), _flat(estimator)[-1], dict(signature or ())
    features: list[FeatureSpec] = []
    for name in names:
        route = paths[name]
        fitted = encoder_categories(route, name) if route else None
        categories = {str(c) for c in fitted or () if not _missing(c)}
        # An encoder fitted on text takes text, even where a CSV reads codes as numbers; a
        # column a vectorizer reads is free text: no categories, every value is new.
        free_text = route is not None and any(isinstance(s, TEXT_VECTORIZERS) for s in route.branch)
        strings = free_text or any(isinstance(c, str) for c in fitted or ())
        if sample is not None:
            column = sample[name]
            kind = "string" if strings else infer_kind(column)
            dtype = "object" if kind == "string" else str(column.dtype)  # as served: objects
            nullable = bool(column.isna().any())
            if kind == "string" and not free_text:
                categories |= {str(v) for v in column.dropna()}
        else:
            kind = signed.get(name) or ("string" if strings else "number")
            dtype, nullable = DEFAULT_DTYPES[kind], False
        if fmt == "array" and kind == "string":
            raise SchemaError(
                f"feature {name!r} holds strings, but the model was fitted on an array "
                "(no feature_names_in_) and is given a float64 array"
            )
        features.append(
            FeatureSpec(
                name=name,
                dtype=dtype,
                kind=kind,
                nullable=nullable or passes_missing(route, final, name),
                categories=sorted(categories) if kind == "string" and categories else None,
            )
        )
    return features


def example_row(features: Sequence[FeatureSpec]) -> list[Value]:
    """A row every feature accepts (no sample): 0.0, 0, False, or the first category."""
    zero: dict[FeatureKind, Value] = {"number": 0.0, "integer": 0, "boolean": False}
    return [(f.categories or [""])[0] if f.kind == "string" else zero[f.kind] for f in features]


def model_input(
    frame: pd.DataFrame, features: Sequence[FeatureSpec], fmt: InputFormat
) -> pd.DataFrame | npt.NDArray[Any]:
    """Rows as the server will give them to the model: a float64 array (array models), the
    texts as a 1-D object array (text models), else the typed frame training uses
    (``app.training.data.typed_frame``: float64 with NaN, int64, bool, objects with None),
    whose dtypes are those of served requests."""
    if fmt == "array":
        return frame[[f.name for f in features]].astype(np.float64).to_numpy()
    typed = typed_sample(frame, features, fmt)
    return typed[features[0].name].to_numpy(dtype=object) if fmt == "text" else typed


def typed_sample(
    frame: pd.DataFrame, features: Sequence[FeatureSpec], fmt: InputFormat
) -> pd.DataFrame:
    """``typed_frame``, but a text model's missing texts are empty ones: a CSV writes an empty
    text as an empty cell, which reads back missing (and a vectorizer takes no missing text)."""
    typed = typed_frame(frame, features)
    return typed.fillna({features[0].name: ""}) if fmt == "text" else typed
