"""Input-drift counters: every scored value counted into its training-reference bin.

Numeric features (numbers, integers, booleans as 0/1): with a feature's inner edges ``e``, a
value ``v`` lands in bin ``i`` = the number of edges strictly below ``v`` (as
``app.training.reference.bin_index``), so bins run ``0 .. len(e)``; missing values (NaN) are
not counted. One batch costs one broadcast comparison and one ``bincount`` over all features.

String features: bin ``i`` is the reference's ``categories[i]`` (the most frequent training
values, at most ``MAX_CATEGORIES``), and the last bin, ``len(categories)``, every other value,
*missing values included* (the reference shares count them the same way). Values that are not
among the feature's training categories at all (``FeatureSpec.categories``) are also counted
in ``modelserve_unknown_categories_total{model,feature}``; missing values are not unknown.

Rows are a float64 matrix (``input_format`` "array", features by position), a DataFrame
(features by column name) or typed rows (their checked values, features by position, read
without building the DataFrame). Then one counter increment per non-empty (feature, bin).

Cardinality per model version: at most ``MAX_DRIFT_FEATURES`` features, each with at most
``REFERENCE_BINS`` (10) numeric bins or ``MAX_CATEGORIES`` + 1 (21) category bins, in both
``modelserve_feature_bin_total`` and ``modelserve_feature_reference_ratio``; plus one
``modelserve_unknown_categories_total`` series per string feature. No label value ever comes
from a request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from prometheus_client import Counter

from app import metrics
from app.registry.metadata import ModelMetadata
from app.serving.contract import TypedRows

# Beyond this many features only the first ones are tracked: keeps series per version bounded.
MAX_DRIFT_FEATURES = 100
# Frames up to this many rows are read in one to_numpy(); larger ones by dtype block.
_SMALL_FRAME = 32

Rows = npt.NDArray[np.float64] | pd.DataFrame | TypedRows
ObjectArray = npt.NDArray[np.object_]
Floats = npt.NDArray[np.float64]
_NONE = np.zeros(0, dtype=np.intp)


@dataclass(frozen=True)
class _Categorical:
    """One tracked string feature."""

    name: str
    codes: dict[str, int]  # value -> bin; training categories outside the top -> other bin
    bins: int  # len(reference categories) + 1, or 0 without a reference (unknowns only)
    offset: int  # of bin 0 in the flattened counts
    knows_categories: bool  # FeatureSpec.categories is set: unknown values can be told

    @property
    def other(self) -> int:
        return max(self.bins - 1, 0)


Placement = list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]]


@dataclass(frozen=True)
class _Layout:
    """Where the tracked features are in a DataFrame read as one or more arrays: per array,
    (positions among the tracked features, columns in that array). Cached per column lists."""

    columns: list[list[str]]
    numeric: Placement
    categorical: Placement

    @staticmethod
    def of(columns: list[list[str]], numeric: list[str], strings: list[str]) -> _Layout:
        def place(names: list[str]) -> Placement:
            out = []
            for part in columns:
                where = {c: i for i, c in enumerate(part)}
                found = [(k, where[n]) for k, n in enumerate(names) if n in where]
                out.append(
                    (
                        np.asarray([k for k, _ in found], dtype=np.intp),
                        np.asarray([i for _, i in found], dtype=np.intp),
                    )
                )
            placed = sum(len(t) for t, _ in out)
            if placed != len(names):
                every = {c for part in columns for c in part}
                raise KeyError(
                    f"rows lack feature column(s) {[n for n in names if n not in every]}"
                )
            return out

        return _Layout(columns, place(numeric), place(strings))


class DriftCounter:
    def __init__(self, meta: ModelMetadata) -> None:
        self.meta = meta
        refs, cat_refs = meta.reference.features, meta.reference.categorical
        tracked: list[tuple[int, str, bool]] = []  # (position, name, is_string)
        for i, spec in enumerate(meta.features):
            if spec.kind == "string":
                if spec.name in cat_refs or spec.categories is not None:
                    tracked.append((i, spec.name, True))
            elif spec.name in refs:
                tracked.append((i, spec.name, False))
        tracked = tracked[:MAX_DRIFT_FEATURES]
        numeric = [(i, name) for i, name, is_string in tracked if not is_string]

        self.columns = np.asarray([i for i, _ in numeric], dtype=np.intp)
        self.names = [name for _, name in numeric]
        widths = [len(refs[name].edges) for name in self.names]
        # Edges padded with +inf: a finite value is never above the padding.
        self.edges = np.full((len(self.names), max(widths, default=0)), np.inf)
        for row, name in enumerate(self.names):
            self.edges[row, : widths[row]] = refs[name].edges
        bins = [w + 1 for w in widths]
        self.offsets = np.concatenate([[0], np.cumsum(bins)[:-1]]).astype(np.intp)
        self.numeric_bins = int(sum(bins))
        bin_labels = [(name, n) for name, n in zip(self.names, bins, strict=True)]

        self.categorical: list[_Categorical] = []
        offset = self.numeric_bins
        specs = meta.features
        for i, name, is_string in tracked:
            if not is_string:
                continue
            ref = cat_refs.get(name)
            top = ref.categories if ref is not None else []
            n_bins = len(top) + 1 if ref is not None else 0
            known = specs[i].categories
            codes = {c: len(top) for c in known or []}
            codes.update({c: b for b, c in enumerate(top)})
            self.categorical.append(
                _Categorical(name, codes, n_bins, offset, knows_categories=known is not None)
            )
            offset += n_bins
            bin_labels.append((name, n_bins))
        self.categorical_names = [c.name for c in self.categorical]
        positions = {spec.name: i for i, spec in enumerate(specs)}
        self._string_positions = [positions[name] for name in self.categorical_names]
        self.total_bins = offset
        self.counters = [
            metrics.FEATURE_BIN.labels(meta.name, meta.version, name, str(b))
            for name, n in bin_labels
            for b in range(n)
        ]
        self._unknown: list[Counter | None] = [
            metrics.UNKNOWN_CATEGORIES.labels(meta.name, c.name) if c.knows_categories else None
            for c in self.categorical
        ]
        self._layout: _Layout | None = None
        self._enabled = self.total_bins > 0 or any(c is not None for c in self._unknown)

    @property
    def enabled(self) -> bool:
        return self._enabled

    # ---- counting --------------------------------------------------------------------------

    def bin_counts(self, rows: Rows) -> npt.NDArray[np.intp]:
        """Counts per (feature, bin), flattened in ``self.counters`` order."""
        return self._count(rows)[0]

    def unknown_counts(self, rows: Rows) -> dict[str, int]:
        """Values per string feature outside its training categories (features that know them)."""
        unknown = self._count(rows)[1]
        return {
            c.name: int(unknown[j]) for j, c in enumerate(self.categorical) if c.knows_categories
        }

    def observe(self, rows: Rows) -> None:
        if not self.enabled or len(rows) == 0:
            return
        counts, unknown = self._count(rows)
        for k in np.flatnonzero(counts).tolist():
            self.counters[k].inc(int(counts[k]))
        if self.categorical:
            for j in np.flatnonzero(unknown).tolist():
                counter = self._unknown[j]
                if counter is not None:
                    counter.inc(int(unknown[j]))

    def _count(self, rows: Rows) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        if isinstance(rows, TypedRows):
            values, strings = self._typed_values(rows.cells)
        elif isinstance(rows, pd.DataFrame):
            values, strings = self._frame_values(rows)
        else:  # a float matrix in feature order: numbers only, no string can be in it
            values, strings = rows[:, self.columns], None
        numeric = self._numeric_counts(values)
        if not self.categorical:
            return numeric, _NONE
        categorical, unknown = self._categorical_counts(strings, len(rows))
        return np.concatenate([numeric, categorical]), unknown

    def _numeric_counts(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
        idx = (values[:, :, None] > self.edges[None, :, :]).sum(axis=2)  # (n, F)
        flat = idx + self.offsets[None, :]
        missing = np.isnan(values)
        kept = flat[~missing] if missing.any() else flat.ravel()
        counts: npt.NDArray[np.intp] = np.bincount(kept, minlength=self.numeric_bins)
        return counts

    def _categorical_counts(
        self, strings: ObjectArray | None, n: int
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        unknown = np.zeros(len(self.categorical), dtype=np.intp)
        size = self.total_bins - self.numeric_bins
        if strings is None:
            return np.zeros(size, dtype=np.intp), unknown
        binned: list[npt.NDArray[np.intp]] = []
        for j, cat in enumerate(self.categorical):
            column = strings[:, j]
            get = cat.codes.get
            code = np.fromiter([get(v, -1) for v in column], dtype=np.intp, count=n)
            outside = code < 0  # neither a training category nor known: unknown or missing
            if outside.any():
                if cat.knows_categories:
                    unknown[j] = int(np.count_nonzero(outside & ~pd.isna(column)))
                code[outside] = cat.other
            if cat.bins:
                binned.append(code + (cat.offset - self.numeric_bins))
        if not binned:
            return np.zeros(size, dtype=np.intp), unknown
        counts: npt.NDArray[np.intp] = np.bincount(np.concatenate(binned), minlength=size)
        return counts, unknown

    def _frame_values(self, frame: pd.DataFrame) -> tuple[npt.NDArray[np.float64], ObjectArray]:
        """The tracked numeric columns as floats (NaN = missing) and string columns as objects.

        Selecting pandas columns one by one costs ~10 µs each: a small frame is read with one
        ``to_numpy()``; a large one by dtype block, so numbers are never boxed into objects.
        """
        if len(frame) <= _SMALL_FRAME:
            parts = [frame]
        else:
            parts = [frame.select_dtypes(include="number"), frame.select_dtypes(exclude="number")]
        columns = [[str(c) for c in part.columns] for part in parts]
        layout = self._layout
        if layout is None or layout.columns != columns:
            layout = _Layout.of(columns, self.names, self.categorical_names)
            self._layout = layout
        arrays = [part.to_numpy() for part in parts]
        values = np.empty((len(frame), len(self.names)), dtype=np.float64)
        for array, (targets, sources) in zip(arrays, layout.numeric, strict=True):
            if len(targets):
                values[:, targets] = _as_float(array[:, sources])
        strings = np.empty((len(frame), len(self.categorical)), dtype=object)
        for array, (targets, sources) in zip(arrays, layout.categorical, strict=True):
            if len(targets):
                strings[:, targets] = array[:, sources]
        return values, strings

    def _typed_values(self, cells: list[list[object]]) -> tuple[Floats, ObjectArray]:
        """As ``_frame_values``, from checked values: numbers, integers and booleans as floats
        (None: NaN, not counted), strings as they are (None: missing)."""
        columns = self.columns.tolist()
        picked = [[row[j] for j in columns] for row in cells]
        strings = np.empty((len(cells), len(self.categorical)), dtype=object)
        for k, j in enumerate(self._string_positions):
            strings[:, k] = [row[j] for row in cells]
        return np.array(picked, dtype=np.float64).reshape(len(cells), len(self.columns)), strings

    # ---- reference -------------------------------------------------------------------------

    def publish_reference(self) -> None:
        """Export the training shares the drift rules compare against (called on activate)."""
        meta = self.meta
        shares = [(name, meta.reference.features[name].proportions) for name in self.names]
        shares += [
            (c.name, meta.reference.categorical[c.name].proportions)
            for c in self.categorical
            if c.bins
        ]
        for name, proportions in shares:
            for b, share in enumerate(proportions):
                metrics.FEATURE_REFERENCE_RATIO.labels(meta.name, meta.version, name, str(b)).set(
                    share
                )
        for label, share in meta.reference.class_ratio.items():
            metrics.CLASS_REFERENCE_RATIO.labels(meta.name, meta.version, label).set(share)


def _as_float(values: npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
    """Numeric columns of a frame as float64; anything missing or not a number becomes NaN."""
    if values.dtype == np.float64:
        return values  # type: ignore[return-value]
    try:
        return values.astype(np.float64)
    except (TypeError, ValueError):  # None or pd.NA in an object column, a stray string
        out = np.empty(values.shape, dtype=np.float64)
        for j in range(values.shape[1]):
            column = pd.to_numeric(pd.Series(values[:, j]), errors="coerce")
            out[:, j] = column.to_numpy(dtype=np.float64, na_value=np.nan)
        return out
