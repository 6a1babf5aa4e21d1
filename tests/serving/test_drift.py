"""Drift counters: the bin rule, reference shares, and real traffic through the app."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from sklearn.datasets import load_breast_cancer

from app.registry.metadata import ModelMetadata
from app.registry.store import Registry
from app.serving.drift import DriftCounter
from app.training.reference import REFERENCE_BINS, bin_index

MODEL = "breast-cancer"


def _meta(registry_path: Path) -> ModelMetadata:
    registry = Registry(registry_path)
    return registry.metadata(MODEL, registry.resolve(MODEL, "production"))


def _bin_counts(meta: ModelMetadata) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = {}
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            labels = sample.labels
            if (
                sample.name == "modelserve_feature_bin_total"
                and labels["model"] == MODEL
                and labels["version"] == meta.version
            ):
                counts[(labels["feature"], labels["bin"])] = sample.value
    return counts


def _psi(expected: list[float], actual: list[float]) -> float:
    e = np.clip(np.asarray(expected), 1e-4, None)
    a = np.clip(np.asarray(actual), 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=9, unique=True),
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=20),
)
def test_bins_follow_the_reference_rule(edges: list[float], values: list[float]) -> None:
    edges = sorted(edges)
    values = values + edges  # values exactly on an edge belong to the bin below it
    meta = ModelMetadata.model_validate(
        {
            "name": "m",
            "version": "1",
            "created_at": "2024-01-01T00:00:00Z",
            "sha256": "0",
            "python_version": "3.11",
            "sklearn_version": "1.5",
            "task": "regression",
            "features": [{"name": "a"}, {"name": "b"}],
            "data_fingerprint": "x",
            "reference": {
                "features": {
                    "b": {
                        "edges": edges,
                        "proportions": [0.0] * (len(edges) + 1),
                        "min": 0,
                        "max": 0,
                        "mean": 0,
                        "std": 0,
                    }
                }
            },
        }
    )
    counter = DriftCounter(meta)
    rows = np.column_stack([np.zeros(len(values)), values])
    expected = np.bincount([bin_index(edges, v) for v in values], minlength=len(edges) + 1)
    assert counter.names == ["b"]
    assert counter.bin_counts(rows).tolist() == expected.tolist()


def test_reference_shares_are_published(client: TestClient, registry_path: Path) -> None:
    meta = _meta(registry_path)
    ref = meta.reference.features["mean radius"]
    for b, share in enumerate(ref.proportions):
        labels = {"model": MODEL, "version": meta.version, "feature": "mean radius", "bin": str(b)}
        assert REGISTRY.get_sample_value("modelserve_feature_reference_ratio", labels) == share
    for label, share in meta.reference.class_ratio.items():
        labels = {"model": MODEL, "version": meta.version, "class": label}
        assert REGISTRY.get_sample_value("modelserve_class_reference_ratio", labels) == share


def test_in_distribution_traffic_matches_reference_and_shift_does_not(
    client: TestClient, registry_path: Path
) -> None:
    meta = _meta(registry_path)
    X = load_breast_cancer().data
    series = sum(len(f.edges) + 1 for f in meta.reference.features.values())
    assert series <= len(meta.features) * REFERENCE_BINS  # the documented bound

    def observed(rows: npt.NDArray[np.float64]) -> dict[str, list[float]]:
        before = _bin_counts(meta)
        for start in range(0, len(rows), 100):
            chunk = rows[start : start + 100].tolist()
            assert client.post("/predict", json={"instances": chunk}).status_code == 200
        after = _bin_counts(meta)
        shares = {}
        for name, ref in meta.reference.features.items():
            delta = [
                after.get((name, str(b)), 0) - before.get((name, str(b)), 0)
                for b in range(len(ref.proportions))
            ]
            assert sum(delta) == len(rows)
            shares[name] = [d / len(rows) for d in delta]
        return shares

    same = observed(X)
    for name, ref in meta.reference.features.items():
        assert np.allclose(same[name], ref.proportions, atol=0.03), name
        assert _psi(ref.proportions, same[name]) < 0.1
    shifted = observed(X + X.std(axis=0))
    drifted = [_psi(ref.proportions, shifted[n]) for n, ref in meta.reference.features.items()]
    assert min(drifted) > 0.2
