"""The ``metadata.json`` schema written beside every registered model artifact."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Task = Literal["classification", "regression"]
Label = int | float | str | bool
FeatureKind = Literal["number", "integer", "boolean", "string"]
InputFormat = Literal["array", "frame", "text"]
Value = float | int | str | bool | None


class FeatureSpec(BaseModel):
    """One input column: what a request may send for it, and how the model receives it."""

    name: str
    dtype: str = Field("float64", description="pandas dtype of the training column.")
    kind: FeatureKind = Field("number", description="JSON values accepted for it.")
    nullable: bool = Field(False, description="null (a missing value) is accepted.")
    categories: list[str] | None = Field(
        None, description="string features: the values seen in training (others are unknown)."
    )


class FeatureReference(BaseModel):
    """Training distribution of one feature: quantile bin edges and the share in each bin.

    ``edges`` are the inner cut points; bin ``i`` holds values in ``(edges[i-1], edges[i]]``,
    so there are ``len(edges) + 1`` bins and as many proportions.
    """

    edges: list[float]
    proportions: list[float]
    min: float
    max: float
    mean: float
    std: float


class CategoryReference(BaseModel):
    """Training distribution of a string feature: the top categories and the share of each.

    Bin ``i`` is ``categories[i]``; the last bin (``len(categories)``) holds every other value,
    so there are ``len(categories) + 1`` proportions, like a numeric feature's bins.
    """

    categories: list[str]
    proportions: list[float]


class Reference(BaseModel):
    features: dict[str, FeatureReference] = Field(default_factory=dict)
    categorical: dict[str, CategoryReference] = Field(default_factory=dict)
    class_ratio: dict[str, float] = Field(
        default_factory=dict, description="Share of each class label in the training target."
    )


class ReliabilityBin(BaseModel):
    """Held-out rows whose top-class probability is in ``(lower, upper]``."""

    lower: float
    upper: float
    count: int
    confidence: float = Field(description="Mean top-class probability of the bin's rows.")
    accuracy: float = Field(description="Share of the bin's rows predicted right.")


class CalibrationMap(BaseModel):
    """Isotonic thresholds: live confidence ``c`` becomes ``np.interp(c, x, y)``."""

    x: list[float]
    y: list[float]


class Calibration(BaseModel):
    """Calibration of the top-class probability on the held-out rows (classifiers)."""

    rows: int
    ece: float = Field(description="Expected calibration error of the raw probabilities.")
    bins: list[ReliabilityBin]
    map: CalibrationMap | None = Field(None, description="Fitted when ece is above 0.05.")
    ece_calibrated: float | None = None
    bins_calibrated: list[ReliabilityBin] | None = None


class ModelMetadata(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str
    version: str
    created_at: datetime
    artifact: str = "model.joblib"
    format: Literal["joblib", "skops"] = "joblib"
    sha256: str
    python_version: str
    sklearn_version: str
    task: Task
    features: list[FeatureSpec]
    target: str = "target"
    classes: list[Label] | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    data_fingerprint: str
    example: list[Value] = Field(
        default_factory=list, description="One training row, used for smoke tests and docs."
    )
    background: list[list[Value]] = Field(
        default_factory=list,
        description="Up to 100 training rows (a seeded sample, values as a request sends them) "
        "that :explain measures contributions from; empty for versions registered before.",
    )
    attribution_reference: dict[str, float] = Field(
        default_factory=dict,
        description="Each feature's share of the mean absolute contribution on the background "
        "rows, computed by the CLI's train and register; what the attribution alert compares "
        "production with. Empty for versions registered before, or with no exact explainer.",
    )
    input_format: InputFormat = Field(
        "array",
        description="What the estimator was fitted on: a float64 array, a pandas DataFrame "
        "with the features as columns (estimators that know feature_names_in_), or text: one "
        "string per row (a pipeline whose first step is a text vectorizer).",
    )
    reference: Reference = Field(default_factory=Reference)
    params: dict[str, Any] = Field(default_factory=dict)
    spec: dict[str, Any] = Field(default_factory=dict)
    git_commit: str | None = None
    calibration: Calibration | None = None

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]
