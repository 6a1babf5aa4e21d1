"""Categorical drift: string features counted per training category into the numeric bins'
metrics, unknown categories counted with bounded labels, and PSI computed as the recording
rule computes it (``prometheus/rules/recording.yml``), from the exported series alone."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from prometheus_client import REGISTRY

from app.registry.metadata import FeatureSpec, ModelMetadata
from app.serving.drift import DriftCounter
from app.training.reference import (
    MAX_CATEGORIES,
    build_categorical_reference,
    build_frame_reference,
    category_reference,
)

CITIES = ["north", "south", "east"]
TRAIN_SHARES = [0.5, 0.3, 0.2]  # north, south, east
_names = itertools.count()


def _training_frame(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "city": pd.Series(rng.choice(CITIES, size=n, p=TRAIN_SHARES), dtype=object),
            "amount": rng.normal(100.0, 15.0, size=n),
        }
    )


def _meta(
    features: list[FeatureSpec] | None = None, train: pd.DataFrame | None = None
) -> ModelMetadata:
    """A fresh model name per call: the metrics registry is process-wide."""
    features = features or [
        FeatureSpec(name="city", dtype="object", kind="string", categories=sorted(CITIES)),
        FeatureSpec(name="amount"),
    ]
    train = _training_frame() if train is None else train
    return ModelMetadata.model_validate(
        {
            "name": f"cat-drift-{next(_names)}",
            "version": "1",
            "created_at": "2024-01-01T00:00:00Z",
            "sha256": "0",
            "python_version": "3.11",
            "sklearn_version": "1.5",
            "task": "regression",
            "features": [f.model_dump() for f in features],
            "data_fingerprint": "x",
            "input_format": "frame",
            "reference": build_frame_reference(
                train, np.zeros(len(train)), features, classification=False
            ).model_dump(),
        }
    )


def _samples(metric: str, model: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == metric and sample.labels["model"] == model:
                out[(sample.labels["feature"], sample.labels.get("bin", ""))] = sample.value
    return out


def _psi(model: str, version: str, feature: str) -> float:
    """The recording rule's PSI, from modelserve_feature_bin_total and _reference_ratio."""
    bins = _samples("modelserve_feature_bin_total", model)
    refs = _samples("modelserve_feature_reference_ratio", model)
    counts = {b: v for (f, b), v in bins.items() if f == feature}
    reference = {b: v for (f, b), v in refs.items() if f == feature}
    total = sum(counts.values())
    assert total > 0
    psi = 0.0
    for b, ref in reference.items():  # bins without traffic are filled with 0 from the reference
        live = counts.get(b, 0.0) / total
        psi += (live - ref) * math.log(max(live, 0.001) / max(ref, 0.001))
    return psi


def _frame(cities: list[str | None], amounts: list[float] | None = None) -> pd.DataFrame:
    amounts = amounts if amounts is not None else [100.0] * len(cities)
    return pd.DataFrame({"city": pd.Series(cities, dtype=object), "amount": amounts})


def test_category_bins_other_bin_and_unknowns_are_exact() -> None:
    meta = _meta()
    ref = meta.reference.categorical["city"]
    assert ref.categories == CITIES  # by frequency: north 50 %, south 30 %, east 20 %
    assert len(ref.proportions) == len(ref.categories) + 1 and ref.proportions[-1] == 0.0
    counter = DriftCounter(meta)
    counter.publish_reference()
    frame = _frame(["north", "north", "south", "east", None, "west", "east", "west", "south"])
    assert counter.unknown_counts(frame) == {"city": 2}  # "west" twice; None is not unknown
    counter.observe(frame)

    bins = _samples("modelserve_feature_bin_total", meta.name)
    city = {b: v for (f, b), v in bins.items() if f == "city"}
    # bins 0..2 = north, south, east; bin 3 = everything else: "west" twice and the missing value
    assert city == {"0": 2.0, "1": 2.0, "2": 2.0, "3": 3.0}
    assert sum(v for (f, _), v in bins.items() if f == "amount") == len(frame)
    unknown = _samples("modelserve_unknown_categories_total", meta.name)
    assert unknown == {("city", ""): 2.0}
    refs = _samples("modelserve_feature_reference_ratio", meta.name)
    assert [refs[("city", str(b))] for b in range(4)] == ref.proportions


def test_training_categories_outside_the_top_go_to_the_other_bin_but_are_not_unknown() -> None:
    many = [f"c{i:02d}" for i in range(30)]
    train = pd.DataFrame({"city": pd.Series(many * 3 + many[:5], dtype=object)})
    reference = build_categorical_reference(train, ["city"])["city"]
    assert reference.categories == many[:MAX_CATEGORIES]  # 5 with 4 rows, then ties by value
    meta = _meta([FeatureSpec(name="city", dtype="object", kind="string", categories=many)], train)
    assert meta.reference.categorical["city"] == reference
    counter = DriftCounter(meta)
    frame = _frame(["c00", "c29", "c29", "new"])
    counts = counter.bin_counts(frame).tolist()
    assert counts == [1] + [0] * (MAX_CATEGORIES - 1) + [3]
    assert counter.unknown_counts(frame) == {"city": 1}


def test_category_reference_counts_missing_values_in_the_other_bin_and_is_pure() -> None:
    frame = pd.DataFrame({"s": pd.Series(["b", "a", None, "b", "c", "a", None, "d"], dtype=object)})
    before = frame.copy()
    ref = category_reference(frame["s"], max_categories=2)
    assert ref.categories == ["a", "b"]  # 2 each, tie broken by value; then c, d with 1
    assert ref.proportions == [2 / 8, 2 / 8, 4 / 8]  # c, d and the two missing values
    pd.testing.assert_frame_equal(frame, before)


def test_numeric_bins_match_the_array_path_and_missing_values_are_not_counted() -> None:
    amount = FeatureSpec(name="amount")
    score = FeatureSpec(name="score")
    city = FeatureSpec(name="city", dtype="object", kind="string", categories=sorted(CITIES))
    rng = np.random.default_rng(1)
    train = pd.DataFrame(
        {
            "amount": rng.normal(100, 15, 500),
            "score": rng.integers(0, 5, 500).astype(float),
            "city": pd.Series(rng.choice(CITIES, 500), dtype=object),
        }
    )
    mixed, numeric = _meta([city, amount, score], train), _meta([amount, score], train)
    assert mixed.reference.features == numeric.reference.features
    edges = mixed.reference.features["amount"].edges
    values = np.concatenate([rng.normal(100, 30, 200), edges, [-1e9, 1e9]])
    scores = rng.integers(-1, 7, len(values)).astype(float)
    frame = pd.DataFrame(
        {
            "city": pd.Series(["north"] * len(values), dtype=object),
            "amount": values,
            "score": scores,
        }
    )
    by_frame, by_array = DriftCounter(mixed), DriftCounter(numeric)
    assert by_frame.names == by_array.names == ["amount", "score"]
    array_counts = by_array.bin_counts(np.column_stack([values, scores]))
    frame_counts = by_frame.bin_counts(frame)
    assert frame_counts[: by_frame.numeric_bins].tolist() == array_counts.tolist()
    # the same numbers, columns in another order and the strings as pandas' own str dtype
    shuffled = frame[["score", "city", "amount"]].astype({"city": "str"})
    assert by_frame.bin_counts(shuffled).tolist() == frame_counts.tolist()
    # small frames (one to_numpy) and large ones (by dtype block) are read alike
    chunks = sum(by_frame.bin_counts(frame.iloc[i : i + 5]) for i in range(0, len(frame), 5))
    assert np.asarray(chunks).tolist() == frame_counts.tolist()

    holes = frame.assign(amount=np.where(np.arange(len(frame)) % 4 == 0, np.nan, values))
    counts = by_frame.bin_counts(holes)
    amount_bins = len(edges) + 1
    assert counts[:amount_bins].sum() == int(np.isfinite(holes["amount"]).sum())
    assert counts[amount_bins : by_frame.numeric_bins].sum() == len(frame)  # score untouched


def test_label_set_stays_bounded_under_many_unseen_values() -> None:
    meta = _meta()
    counter = DriftCounter(meta)
    expected = {(s, b) for s, b in _samples("modelserve_feature_bin_total", meta.name)}
    assert {b for f, b in expected if f == "city"} == {"0", "1", "2", "3"}
    frame = _frame([f"never-seen-{i}" for i in range(1000)])
    counter.observe(frame)
    bins = _samples("modelserve_feature_bin_total", meta.name)
    assert set(bins) == expected
    assert bins[("city", "3")] == 1000
    assert _samples("modelserve_unknown_categories_total", meta.name) == {("city", ""): 1000.0}
    every_value = {
        value
        for family in REGISTRY.collect()
        for s in family.samples
        for value in s.labels.values()
    }
    assert not any(v.startswith("never-seen-") for v in every_value)


@pytest.mark.parametrize("rows", [3, 300], ids=["small-frame", "large-frame"])
def test_nullable_booleans_count_as_0_and_1_and_none_is_not_counted(rows: int) -> None:
    member = FeatureSpec(name="member", kind="boolean", dtype="object", nullable=True)
    train = pd.DataFrame({"member": pd.Series([True, False, False, None] * 50, dtype=object)})
    meta = _meta([member], train)
    # edges [0, 1]: False, True, and an (empty) bin above 1
    assert meta.reference.features["member"].proportions == [2 / 3, 1 / 3, 0.0]
    values = ([True, None, False] * rows)[:rows]
    counts = DriftCounter(meta).bin_counts(
        pd.DataFrame({"member": pd.Series(values, dtype=object)})
    )
    assert counts.tolist() == [values.count(False), values.count(True), 0]


def test_array_rows_count_numeric_bins_only() -> None:
    meta = _meta([FeatureSpec(name="amount")])
    counter = DriftCounter(meta)
    counter.observe(np.asarray([[90.0], [100.0], [110.0]]))
    bins = _samples("modelserve_feature_bin_total", meta.name)
    assert sum(bins.values()) == 3
    assert counter.categorical_names == []


@pytest.mark.parametrize(
    ("shares", "low"),
    [(TRAIN_SHARES, True), ([0.25, 0.15, 0.6], False)],  # east 20 % -> 60 %
    ids=["in-distribution", "east-shifted"],
)
def test_psi_from_the_counters_as_the_recording_rule_computes_it(
    shares: list[float], low: bool
) -> None:
    meta = _meta()
    counter = DriftCounter(meta)
    counter.publish_reference()
    rng = np.random.default_rng(7)
    for _ in range(20):  # 20 model calls of 250 rows
        cities = rng.choice(CITIES, size=250, p=shares).tolist()
        counter.observe(_frame(cities, rng.normal(100.0, 15.0, 250).tolist()))
    city_psi = _psi(meta.name, meta.version, "city")
    amount_psi = _psi(meta.name, meta.version, "amount")
    assert amount_psi < 0.05  # the numeric feature did not move
    if low:
        assert city_psi < 0.05
    else:
        assert city_psi > 0.2
