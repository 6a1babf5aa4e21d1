"""Loading training data (CSV or a bundled scikit-learn data set) and splitting it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn import datasets
from sklearn.model_selection import train_test_split

from app.training.spec import SpecError, TrainSpec

SKLEARN_PREFIX = "sklearn:"


@dataclass(frozen=True)
class Split:
    feature_names: list[str]
    X_train: npt.NDArray[np.float64]
    X_test: npt.NDArray[np.float64]
    y_train: npt.NDArray[Any]
    y_test: npt.NDArray[Any]
    train: pd.DataFrame
    test: pd.DataFrame


def load_frame(spec: TrainSpec) -> pd.DataFrame:
    """The raw table, features and target column, exactly as the source has it."""
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
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise SpecError(f"data.source: cannot read CSV {path}: {exc}") from None


def feature_columns(spec: TrainSpec, frame: pd.DataFrame) -> list[str]:
    if spec.data.features is not None:
        return list(spec.data.features)
    return [str(c) for c in frame.columns if c != spec.data.target]


def split(spec: TrainSpec, frame: pd.DataFrame, features: list[str]) -> Split:
    """A seeded (and for classifiers stratified) hold-out split of a validated frame."""
    X = frame[features].to_numpy(dtype=np.float64)
    y = frame[spec.data.target].to_numpy()
    stratify = y if spec.task == "classification" and spec.split.stratify else None
    index = np.arange(len(frame))
    idx_train, idx_test = train_test_split(
        index, test_size=spec.split.test_size, random_state=spec.seed, stratify=stratify
    )
    return Split(
        feature_names=features,
        X_train=X[idx_train],
        X_test=X[idx_test],
        y_train=y[idx_train],
        y_test=y[idx_test],
        train=frame.iloc[idx_train],
        test=frame.iloc[idx_test],
    )
