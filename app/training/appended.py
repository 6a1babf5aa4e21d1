"""``data.append``: logged production rows (``modelserve export``) trained on with the data.

Only labelled rows are kept, with the training table's columns (export adds the prediction,
version and time, which are not features). The rows go through validation and the seeded split
like any other; the production rows that land in the held-out split are where the candidate and
the production version are compared, so the table says how each does on today's traffic.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from app.training.data import Split
from app.training.spec import SpecError, TrainSpec

Mask = npt.NDArray[np.bool_]


def _path(spec: TrainSpec, source: str) -> Path:
    path = Path(source).expanduser()
    return path if path.is_absolute() else spec.base_dir / path


def read_rows(spec: TrainSpec, source: str) -> pd.DataFrame:
    path = _path(spec, source)
    text = {name: str for name, kind in spec.data.kinds.items() if kind == "string"}
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=text or None)
    except (OSError, ValueError, ImportError) as exc:
        raise SpecError(f"data.append: cannot read {path}: {exc}") from None


def with_production(spec: TrainSpec, frame: pd.DataFrame) -> tuple[pd.DataFrame, Mask]:
    """``frame`` followed by the labelled rows of every ``data.append`` file (index reset), and
    which rows came from production."""
    if not spec.data.append:
        return frame, np.zeros(len(frame), dtype=bool)
    parts = [frame]
    for source in spec.data.append:
        rows = read_rows(spec, source)
        missing = [c for c in frame.columns if c not in rows.columns]
        if missing:
            raise SpecError(f"data.append: {source} has no column(s) {missing}")
        parts.append(rows.loc[rows[spec.data.target].notna(), list(frame.columns)])
    combined = pd.concat(parts, ignore_index=True)
    mask = np.zeros(len(combined), dtype=bool)
    mask[len(frame) :] = True
    return combined, mask


def production_held_out(split: Split, from_production: Mask) -> Split | None:
    """The held-out rows that came from production, as a split of their own (None if none)."""
    keep = from_production[split.test.index.to_numpy()]
    if not keep.any():
        return None
    return dataclasses.replace(
        split,
        X_test=split.X_test[keep],
        y_test=split.y_test[keep],
        test=split.test[keep],
        frame_test=None if split.frame_test is None else split.frame_test[keep],
    )
