"""Where ``simulate`` gets its rows: a CSV of any feature types, or a bundled data set."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


class SimulationError(Exception):
    """The simulation cannot run (bad target, unknown training data)."""


@dataclass(frozen=True)
class Shift:
    """``feature=value:share``: that share of the rows get ``value`` for ``feature``."""

    feature: str
    value: str
    share: float

    @classmethod
    def parse(cls, text: str) -> Shift:
        feature, sep, rest = text.partition("=")
        value, sep2, share = rest.rpartition(":")
        try:
            fraction = float(share)
        except ValueError:
            fraction = -1.0
        if not (sep and sep2 and feature and 0.0 <= fraction <= 1.0):
            raise SimulationError(
                f"--shift {text!r}: expected FEATURE=VALUE:SHARE, 0 <= SHARE <= 1"
            )
        return cls(feature, value, fraction)


def _datasets() -> dict[str, Callable[[], Any]]:
    from sklearn import datasets

    return {
        "breast_cancer": datasets.load_breast_cancer,
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "diabetes": datasets.load_diabetes,
    }


def training_data(
    feature_names: list[str] | None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[Any], bool]:
    """(X, y, is_classification) of the bundled data set with these feature names."""
    for name, loader in _datasets().items():
        bunch = loader()
        if feature_names is None and name == "breast_cancer":
            feature_names = list(bunch.feature_names)
        if feature_names is not None and list(bunch.feature_names) == feature_names:
            return np.asarray(bunch.data, dtype=np.float64), bunch.target, name != "diabetes"
    raise SimulationError(
        "no bundled training data has this model's features; "
        f"known data sets: {', '.join(_datasets())}"
    )


def frame_data(path: Path, target: str | None) -> tuple[list[dict[str, Any]], npt.NDArray[Any]]:
    """Rows of a CSV as JSON objects (empty cells: null) and its target column."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise SimulationError(f"cannot read {path}: {exc}") from None
    if target is None or target not in frame.columns:
        raise SimulationError(f"--target must name a column of {path}: {list(frame.columns)}")
    y = frame.pop(target).to_numpy()
    rows = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return [{str(k): _plain(v) for k, v in row.items()} for row in rows], y


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def is_classification(y: npt.NDArray[Any]) -> bool:
    return not (np.issubdtype(y.dtype, np.floating) and len(np.unique(y)) > 20)
