"""Data integrity checks run before training, declared as pandera schemas.

The whole-table schema checks the expected columns and dtypes, missing values, NaN/Inf,
out-of-range values against the production version's training range, duplicate rows, the
label set and class balance. After the split, a second schema refuses test rows that also
occur in the train split. Every failure names its column and check.

Feature columns are checked by kind (``app.training.data.feature_schema``): numbers and
integers coerced to float64 (integers must be whole), booleans as pandas ``boolean``, strings
as ``str`` with at most ``validation.max_unseen_share`` of values outside production's
categories. Only ``data.nullable`` columns may have missing values, at most
``validation.max_missing_share`` of each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from app.registry.metadata import FeatureSpec, ModelMetadata
from app.training.data import declared_features
from app.training.spec import TrainSpec

TABLE = "<table>"
SCHEMA_CHECKS = {
    "column_in_dataframe": "expected column is missing",
    "column_in_schema": "unexpected column",
}


@dataclass(frozen=True)
class Failure:
    column: str
    check: str
    count: int
    examples: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "check": self.check,
            "count": self.count,
            "examples": self.examples,
        }


@dataclass
class ValidationReport:
    failures: list[Failure] = field(default_factory=list)
    checked_rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures

    def extend(self, other: ValidationReport) -> None:
        self.failures.extend(other.failures)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.checked_rows,
            "failures": [f.as_dict() for f in self.failures],
        }

    def table(self) -> str:
        lines = ["| column | check | failing | examples |", "|---|---|---|---|"]
        for f in self.failures:
            lines.append(f"| {f.column} | {f.check} | {f.count} | {', '.join(f.examples)} |")
        return "\n".join(lines)


def _finite(series: pd.Series) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    return pd.Series(np.isfinite(values.to_numpy(dtype=np.float64)), index=series.index)


def _whole(series: pd.Series) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    return pd.Series(np.mod(values.to_numpy(dtype=np.float64), 1) == 0, index=series.index)


def _missing_share(bound: float) -> pa.Check:
    def check(series: pd.Series) -> pd.Series:
        # Within the bound every row passes; beyond it the missing rows are the failure cases.
        return series.notna() | bool(series.isna().mean() <= bound)

    return pa.Check(check, name=f"missing_share(<= {bound:.0%})", ignore_na=False)


def _unseen_share(categories: Sequence[str], bound: float) -> pa.Check:
    allowed = set(categories)

    def check(series: pd.Series) -> pd.Series:
        seen = series.astype(str).isin(allowed)
        return seen | bool((~seen).mean() <= bound)

    return pa.Check(
        check,
        name=f"unseen_categories(share <= {bound:.0%} of {len(allowed)} production categories)",
        ignore_na=True,
    )


def _production_feature(production: ModelMetadata | None, name: str) -> FeatureSpec | None:
    for feature in production.features if production else []:
        if feature.name == name:
            return feature
    return None


def _column(feature: FeatureSpec, spec: TrainSpec, production: ModelMetadata | None) -> pa.Column:
    name, kind = feature.name, feature.kind
    checks: list[pa.Check] = []
    dtype: Any = "float64"
    if kind in ("number", "integer"):
        checks = _feature_checks(name, spec, production)
        if kind == "integer":
            checks.append(pa.Check(_whole, name="integer", element_wise=False, ignore_na=True))
    elif kind == "boolean":
        dtype = "boolean"
    else:
        dtype = str
        previous = _production_feature(production, name)
        if previous is not None and previous.categories is not None:
            checks.append(_unseen_share(previous.categories, spec.validation.max_unseen_share))
    if feature.nullable:
        checks.append(_missing_share(spec.validation.max_missing_share))
    return pa.Column(dtype, checks, nullable=feature.nullable, coerce=True)


def _feature_checks(name: str, spec: TrainSpec, production: ModelMetadata | None) -> list[pa.Check]:
    checks = [pa.Check(_finite, name="finite", element_wise=False, ignore_na=True)]
    ref = production.reference.features.get(name) if production else None
    if ref is not None:
        margin = spec.validation.range_margin * max(ref.max - ref.min, abs(ref.max), 1e-12)
        low, high = ref.min - margin, ref.max + margin
        checks.append(
            pa.Check.in_range(
                low,
                high,
                name=f"in_production_range[{low:.6g}, {high:.6g}]",
                ignore_na=True,
            )
        )
    return checks


def _target_checks(spec: TrainSpec, production: ModelMetadata | None) -> list[pa.Check]:
    if spec.task != "classification":
        return [pa.Check(_finite, name="finite", element_wise=False)]
    checks: list[pa.Check] = []
    labels: list[Any] | None = spec.validation.labels
    if labels is None and production is not None and production.classes is not None:
        labels = list(production.classes)
    if labels:
        allowed = {str(v) for v in labels}
        checks.append(
            pa.Check(
                lambda s: s.astype(str).isin(allowed),
                name=f"label_in{sorted(allowed)}",
            )
        )
    minimum = spec.validation.min_class_share
    checks.append(
        pa.Check(
            lambda s: bool(s.value_counts(normalize=True).min() >= minimum) and s.nunique() >= 2,
            name=f"class_balance(every class >= {minimum:.0%}, at least 2 classes)",
        )
    )
    return checks


def table_schema(
    spec: TrainSpec,
    features: Sequence[str] | Sequence[FeatureSpec],
    production: ModelMetadata | None,
) -> pa.DataFrameSchema:
    """``features`` as typed specs (``data.feature_schema``), or as names typed from the spec
    and production alone (undeclared columns are non-nullable numbers, as always)."""
    names = [f for f in features if isinstance(f, str)]
    typed = [f for f in features if isinstance(f, FeatureSpec)]
    typed += declared_features(spec, names, production) if names else []
    columns = {f.name: _column(f, spec, production) for f in typed}
    columns[spec.data.target] = pa.Column(
        None, _target_checks(spec, production), nullable=False, required=True
    )
    max_dup = spec.validation.max_duplicate_share
    return pa.DataFrameSchema(
        columns,
        checks=[
            pa.Check(
                lambda df: bool(df.duplicated().mean() <= max_dup),
                name=f"duplicate_rows(share <= {max_dup:.0%})",
            )
        ],
        strict=True,
        ordered=False,
    )


def _row_keys(frame: pd.DataFrame) -> pd.Series:
    return pd.util.hash_pandas_object(frame, index=False)


def split_schema(train: pd.DataFrame, features: list[str]) -> pa.DataFrameSchema:
    seen = set(_row_keys(train[features]).tolist())
    return pa.DataFrameSchema(
        checks=[
            pa.Check(
                lambda df: ~_row_keys(df[features]).isin(seen),
                name="test_rows_not_in_train",
            )
        ]
    )


def _report(exc: SchemaErrors, rows: int) -> ValidationReport:
    cases = exc.failure_cases.copy()
    # Table-wide checks report one case per cell: name the table and count rows instead.
    table_wide = (cases["schema_context"] == "DataFrameSchema") & cases["column"].isna()
    whole_rows = (cases["schema_context"] == "DataFrameSchema") & ~table_wide
    cases.loc[table_wide | whole_rows, "column"] = TABLE
    for check, meaning in SCHEMA_CHECKS.items():
        hit = cases["check"] == check
        cases.loc[hit, "column"] = cases.loc[hit, "failure_case"].astype(str)
        cases.loc[hit, "check"] = meaning
    failures: list[Failure] = []
    for (column, check), group in cases.groupby(
        [cases["column"].astype(str), cases["check"].astype(str)], sort=False
    ):
        index = group["index"].dropna().drop_duplicates()
        count = len(index) if len(index) else len(group)
        examples = [str(v) for v in group["failure_case"].head(3).tolist()]
        if len(index):
            examples.append(f"rows {', '.join(str(i) for i in index.head(5).tolist())}")
        failures.append(Failure(str(column), str(check), count, examples))
    return ValidationReport(failures, rows)


def validate(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> ValidationReport:
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        return _report(exc, len(frame))
    return ValidationReport([], len(frame))
