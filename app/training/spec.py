"""The training spec: what to train on, which estimator, how to split, and the gate.

A spec is a YAML or TOML file validated by pydantic; ``--set dotted.key=value`` overrides any
field (the value is parsed as YAML, so ``--set split.test_size=0.3`` gives a float).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.registry import names
from app.registry.artifacts import ArtifactFormat
from app.registry.metadata import FeatureKind, Task
from app.training.quality import DEFAULT_PRIMARY, DEFAULT_THRESHOLDS, METRICS


class SpecError(ValueError):
    """The spec file is missing, unparsable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StepSpec(_Strict):
    """One scikit-learn object by import path, e.g. ``sklearn.preprocessing.StandardScaler``."""

    class_: str = Field(alias="class", min_length=3)
    params: dict[str, Any] = Field(default_factory=dict)
    name: str | None = None


class DataSpec(_Strict):
    source: str = Field(
        description="``sklearn:<dataset>`` (e.g. sklearn:breast_cancer) or a CSV path, "
        "relative to the spec file."
    )
    target: str = "target"
    features: list[str] | None = Field(
        None, description="Feature columns in order; default: every column but the target."
    )
    kinds: dict[str, FeatureKind] = Field(
        default_factory=dict,
        description="column -> number | integer | boolean | string. Columns not listed take "
        "the production version's kind, else one inferred from the data.",
    )
    nullable: list[str] = Field(
        default_factory=list,
        description="Columns that may have missing values (empty CSV cells), in training data "
        "(up to validation.max_missing_share) and in requests (null).",
    )
    append: list[str] = Field(
        default_factory=list,
        description="Files of logged production rows (``modelserve export``, CSV or Parquet, "
        "relative to the spec file) trained on with the data; their labelled rows that land in "
        "the held-out split are where the candidate is compared with production.",
    )

    @model_validator(mode="after")
    def _columns_are_features(self) -> DataSpec:
        for field, columns in (("kinds", list(self.kinds)), ("nullable", self.nullable)):
            if self.target in columns:
                raise ValueError(f"data.{field}: {self.target!r} is the target, not a feature")
            if self.features is not None:
                unknown = [c for c in columns if c not in self.features]
                if unknown:
                    raise ValueError(f"data.{field}: not in data.features: {unknown}")
        return self


class SplitSpec(_Strict):
    test_size: float = Field(0.2, gt=0, lt=1)
    stratify: bool = True
    cv_folds: int = Field(0, ge=0, description="> 1 adds k-fold CV scores on the train split.")


class ValidationSpec(_Strict):
    range_margin: float = Field(
        0.5,
        ge=0,
        description="Values may exceed production's training [min, max] by this share of "
        "its span before they count as out of range.",
    )
    max_duplicate_share: float = Field(0.0, ge=0, le=1)
    min_class_share: float = Field(0.05, ge=0, le=1)
    labels: list[int | str] | None = Field(
        None, description="Allowed labels; default: the production version's classes."
    )
    max_missing_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Largest share of missing values in each data.nullable column; columns "
        "not listed there may have none at all.",
    )
    max_unseen_share: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Largest share of a string column's values (missing ones aside) that are "
        "not among the production version's categories for it.",
    )


class GateSpec(_Strict):
    thresholds: dict[str, float] | None = Field(
        None, description="metric -> bound; default accuracy >= 0.85 for classifiers."
    )
    primary: str | None = Field(None, description="Metric compared with production.")
    tolerance: float = Field(0.0, ge=0, description="How much worse than production is okay.")


class TrainSpec(_Strict):
    name: str = Field(pattern=names.NAME_PATTERN)
    task: Task = "classification"
    seed: int = 42
    data: DataSpec
    split: SplitSpec = Field(default_factory=SplitSpec)
    preprocessing: list[StepSpec] = Field(default_factory=list)
    estimator: StepSpec
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    gate: GateSpec = Field(default_factory=GateSpec)
    format: ArtifactFormat = Field(
        "joblib", description="Artifact format: joblib (pickle) or skops (typed, no pickle)."
    )
    base_dir: Path = Field(Path("."), exclude=True, description="Where relative paths start.")

    @model_validator(mode="after")
    def _known_metrics(self) -> TrainSpec:
        for metric in [*self.thresholds, self.primary_metric]:
            if metric not in METRICS:
                raise ValueError(f"unknown metric {metric!r}; known: {', '.join(sorted(METRICS))}")
        return self

    @property
    def thresholds(self) -> dict[str, float]:
        if self.gate.thresholds is not None:
            return self.gate.thresholds
        return DEFAULT_THRESHOLDS[self.task]

    @property
    def primary_metric(self) -> str:
        return self.gate.primary or DEFAULT_PRIMARY[self.task]

    def data_path(self) -> Path:
        path = Path(self.data.source).expanduser()
        return path if path.is_absolute() else self.base_dir / path


def _set_dotted(doc: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = doc
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise SpecError(f"--set {dotted}: {key!r} is not a mapping")
        node = child
    node[keys[-1]] = value


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["split.test_size=0.3"]`` -> ``{"split.test_size": 0.3}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = yaml.safe_load(raw)
    return out


def load_spec(path: Path, overrides: dict[str, Any] | None = None) -> TrainSpec:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc}") from None
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: the spec must be a mapping")
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    raw["base_dir"] = path.resolve().parent
    try:
        return TrainSpec.model_validate(raw)
    except ValueError as exc:
        raise SpecError(f"{path}: invalid spec: {exc}") from None
