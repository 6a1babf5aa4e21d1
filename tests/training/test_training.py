"""Training spec, data checks, gate, reproducibility and registry history, in-process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.registry.audit import verify_all
from app.registry.store import Registry, RegistryError
from app.training.spec import SpecError, load_spec, parse_overrides
from app.training.train import run
from tests.helpers.lifecycle import DEFAULT_SPEC, NAME, breast_cancer_csv, snapshot, train_quick


def test_yaml_and_toml_specs_are_equivalent_and_flags_override(tmp_path: Path) -> None:
    toml = tmp_path / "spec.toml"
    toml.write_text(
        'name = "breast-cancer"\nseed = 42\n'
        '[data]\nsource = "sklearn:breast_cancer"\n'
        "[split]\ntest_size = 0.2\ncv_folds = 5\n"
        '[[preprocessing]]\nclass = "sklearn.preprocessing.StandardScaler"\nname = "scale"\n'
        '[estimator]\nclass = "sklearn.linear_model.LogisticRegression"\nname = "clf"\n'
        "[estimator.params]\nmax_iter = 1000\n"
        "[validation]\nrange_margin = 0.5\n"
        '[gate]\nthresholds = {accuracy = 0.85, roc_auc = 0.9}\nprimary = "accuracy"\n'
        "tolerance = 0.01\n"
    )
    from_toml = load_spec(toml)
    from_yaml = load_spec(DEFAULT_SPEC)
    assert from_toml.model_dump(exclude={"base_dir"}) == from_yaml.model_dump(exclude={"base_dir"})
    overridden = load_spec(
        DEFAULT_SPEC, parse_overrides(["split.test_size=0.3", "estimator.params.C=0.5"])
    )
    assert overridden.split.test_size == 0.3
    assert overridden.estimator.params == {"max_iter": 1000, "C": 0.5}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"gate.thresholds": {"accuarcy": 0.9}}, "unknown metric 'accuarcy'"),
        ({"estimator.colour": "red"}, "colour"),
        ({"split.test_size": 1.5}, "test_size"),
    ],
)
def test_invalid_specs_are_refused_naming_the_field(
    override: dict[str, object], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        load_spec(DEFAULT_SPEC, override)


def test_unknown_estimator_is_a_spec_error(registry_path: Path) -> None:
    with pytest.raises(SpecError, match=r"sklearn\.linear_model\.Nope"):
        train_quick(registry_path, **{"estimator.class": "sklearn.linear_model.Nope"})


def test_same_spec_and_data_give_the_same_model_and_full_metadata(tmp_path: Path) -> None:
    first = Registry(tmp_path / "a")
    second = Registry(tmp_path / "b")
    spec = load_spec(DEFAULT_SPEC, {"split.cv_folds": 3})
    out_a = run(spec, first, promote_if_better=True)
    out_b = run(spec, second, promote_if_better=True)
    assert out_a.version == out_b.version == "1" and out_a.promoted
    meta_a, meta_b = first.metadata(NAME, "1"), second.metadata(NAME, "1")
    assert meta_a.metrics == meta_b.metrics
    assert meta_a.data_fingerprint == meta_b.data_fingerprint
    assert set(meta_a.metrics) >= {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert "cv_accuracy_mean" in meta_a.metrics
    assert meta_a.params["clf"]["max_iter"] == 1000
    assert meta_a.params["scale"]["with_mean"] is True
    assert meta_a.spec["estimator"]["class"] == "sklearn.linear_model.LogisticRegression"
    assert len(meta_a.reference.features) == 30 and meta_a.classes == [0, 1]
    assert len(meta_a.example) == 30
    # The committed default model is this spec's output: same split, same data, same numbers.
    committed = Registry(DEFAULT_SPEC.parent.parent).metadata(NAME, "1")
    assert committed.data_fingerprint == meta_a.data_fingerprint
    assert committed.example == meta_a.example
    rows = np.asarray([meta_a.example])
    est_a, est_b = first.load(NAME, "1").estimator, second.load(NAME, "1").estimator
    assert est_a.predict_proba(rows).tolist() == est_b.predict_proba(rows).tolist()
    card = (first.root / NAME / "1" / "MODEL_CARD.md").read_text()
    assert card.startswith("# breast-cancer version 1") and meta_a.data_fingerprint in card


def test_regressor_reports_rmse_mae_r2_and_is_gated(tmp_path: Path) -> None:
    spec_path = tmp_path / "diabetes.yaml"
    spec_path.write_text(
        "name: diabetes\ntask: regression\ndata: {source: 'sklearn:diabetes'}\n"
        "estimator: {class: sklearn.linear_model.Ridge, params: {alpha: 0.1}}\n"
        "gate: {thresholds: {r2: 0.3, rmse: 80}}\n"
    )
    registry = Registry(tmp_path / "models")
    outcome = run(load_spec(spec_path), registry)
    assert outcome.status == "registered"
    assert set(registry.metadata("diabetes", "1").metrics) == {"rmse", "mae", "r2"}
    failing = run(load_spec(spec_path, {"gate.thresholds": {"rmse": 1.0}}), registry)
    assert failing.status == "gate_failed"
    assert failing.report["gate"] == [
        {"rule": "rmse <= 1.0", "value": failing.report["metrics"]["rmse"], "ok": False}
    ]
    assert registry.versions("diabetes") == ["1"]


@pytest.mark.parametrize(
    ("change", "column", "check"),
    [
        (lambda f: pd.concat([f, f.head(20)]), "<table>", "duplicate_rows"),
        (lambda f: f.assign(target=f["target"].where(f.index > 2, 7)), "target", "label_in"),
        (lambda f: f.assign(target=f["target"].where(f.index > 15, 0) * 0), "target", "class_"),
        (lambda f: f.assign(**{"mean area": np.inf}), "mean area", "finite"),
        (lambda f: f.assign(**{"mean area": "big"}), "mean area", "coerce_dtype"),
        (lambda f: f.assign(extra=1.0), "extra", "unexpected column"),
    ],
    ids=["duplicates", "label-set", "class-balance", "inf", "dtype", "extra-column"],
)
def test_data_checks_name_column_and_check(
    registry_path: Path,
    tmp_path: Path,
    change: Callable[[pd.DataFrame], pd.DataFrame],
    column: str,
    check: str,
) -> None:
    before = snapshot(registry_path)
    csv = breast_cancer_csv(tmp_path / "data.csv", change)
    outcome = train_quick(registry_path, **{"data.source": str(csv)})
    assert outcome.status == "validation_failed"
    failures = outcome.report["validation"]["failures"]
    assert any(f["column"] == column and check in f["check"] for f in failures), failures
    assert snapshot(registry_path) == before


def test_rows_shared_between_train_and_test_are_refused(
    registry_path: Path, tmp_path: Path
) -> None:
    csv = breast_cancer_csv(tmp_path / "data.csv", lambda f: pd.concat([f, f.head(40)]))
    outcome = train_quick(
        registry_path,
        **{"data.source": str(csv), "validation.max_duplicate_share": 0.2},
    )
    failures = outcome.report["validation"]["failures"]
    assert [(f["column"], f["check"]) for f in failures] == [("<table>", "test_rows_not_in_train")]


def test_promote_if_better_respects_tolerance(registry_path: Path) -> None:
    worse = {"estimator.params": {"max_iter": 1000, "C": 0.0005}}
    held_back = train_quick(registry_path, **worse)
    assert held_back.status == "registered" and held_back.comparison is not None
    assert not held_back.comparison.candidate_not_worse
    spec = load_spec(DEFAULT_SPEC, {"split.cv_folds": 0, **worse})
    registry = Registry(registry_path)
    assert not run(spec, registry, promote_if_better=True).promoted
    assert run(spec, registry, promote_if_better=True, tolerance=0.5).promoted
    assert registry.aliases(NAME)["production"] == "4"


def test_rollback_walks_back_through_alias_history(registry: Registry) -> None:
    for _ in range(2):
        registry.register(NAME, registry.load(NAME, "1").estimator, _fields(registry))
    registry.set_alias(NAME, "production", "2")
    registry.set_alias(NAME, "production", "3")
    assert registry.rollback(NAME) == ("3", "2")
    assert registry.rollback(NAME) == ("2", "1")
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback(NAME)
    assert registry.aliases(NAME)["production"] == "1"
    assert all("at" in entry for entry in registry.alias_history(NAME))


def test_verify_all_reports_tampering_and_dangling_aliases(registry: Registry) -> None:
    registry.register(NAME, registry.load(NAME, "1").estimator, _fields(registry))
    assert [e for *_, e in verify_all(registry)] == [None, None]
    artifact = registry.root / NAME / "2" / "model.joblib"
    artifact.write_bytes(b"x" + artifact.read_bytes())
    results = verify_all(registry, [NAME])
    assert results[0] == (NAME, "1", None) and "sha256" in str(results[1][2])


def test_admin_reload_requires_the_token_and_is_absent_without_one(
    make_client: Callable[..., TestClient],
) -> None:
    assert make_client().post("/admin/reload").status_code == 404
    client = make_client(admin_token="t0ken")
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": "Basic t0ken"}).status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": "Bearer t0k"}).status_code == 403
    ok = client.post("/admin/reload", headers={"Authorization": "Bearer t0ken"})
    assert ok.status_code == 200
    assert ok.json() == {"swaps": [], "serving": {NAME: "1"}}


def _fields(registry: Registry) -> dict[str, object]:
    meta = registry.metadata(NAME, "1")
    return meta.model_dump(exclude={"name", "version", "sha256", "artifact", "format"})
