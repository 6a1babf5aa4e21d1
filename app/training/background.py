"""The background sample stored with each version: the training rows explanations measure from.

Up to ``BACKGROUND_ROWS`` rows drawn without replacement by a fixed seed (so training the same
data twice stores the same rows), kept in their training order, as the JSON values a request
would send (missing values as null). ``:explain`` (``app.serving.explain``) measures a linear
model's contributions from their mean; ``metadata.json`` carries them beside ``example``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from app.registry.metadata import Value

BACKGROUND_ROWS = 100
SEED = 0


def picked(n: int, limit: int = BACKGROUND_ROWS) -> npt.NDArray[np.intp]:
    """The indices of the rows kept out of ``n``: all of them, or ``limit`` drawn by the seed."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(SEED).choice(n, size=limit, replace=False))


def _native(value: Any) -> Value:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value  # type: ignore[no-any-return]


def matrix_rows(X: npt.NDArray[np.float64]) -> list[list[Value]]:
    """Rows of a float training matrix (an "array" model)."""
    return [[_native(v) for v in X[i].tolist()] for i in picked(len(X))]


def frame_rows(frame: pd.DataFrame) -> list[list[Value]]:
    """Rows of a typed feature frame, in its column order (the features')."""
    rows = frame.iloc[picked(len(frame))]
    return [[_native(v) for v in row] for row in rows.itertuples(index=False, name=None)]
