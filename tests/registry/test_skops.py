"""skops artifacts: registered per version, loaded with an explicit allow-listed trusted list.

A smuggled type is refused before anything of it runs (checked in a fresh CLI process, where
even importing its module would leave a mark), a changed byte is refused by the checksum, and
promote/verify refuse what the server would refuse.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import skops.io
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.preprocessing import FunctionTransformer

from app.registry.artifacts import UntrustedArtifactError, skops_trusted_types
from app.registry.store import ChecksumMismatchError, Registry, UnsafeArtifactError
from app.training.spec import load_spec
from app.training.train import run
from tests.helpers.lifecycle import DEFAULT_SPEC, NAME
from tests.helpers.skops_payload import MARKER_ENV, Payload
from tests.helpers.support import ROOT, run_cli

PAYLOAD_TYPE = "tests.helpers.skops_payload.Payload"


def _train(registry_path: Path, fmt: str) -> str:
    """A new version of the default spec in ``fmt``, chosen by the spec's ``format`` field."""
    spec = load_spec(DEFAULT_SPEC, {"split.cv_folds": 0, "format": fmt})
    outcome = run(spec, Registry(registry_path))
    assert outcome.status == "registered" and outcome.version is not None
    return outcome.version


def _replace_artifact(registry: Registry, version: str, data: bytes) -> None:
    """Swap the artifact and record its sha256, as someone with write access could."""
    version_dir = registry.model_dir(NAME) / version
    (version_dir / "model.skops").write_bytes(data)
    meta_path = version_dir / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    meta_path.write_text(json.dumps(meta))


def _smuggled_model(registry: Registry, version: str) -> bytes:
    """The version's own fitted model, carrying one extra attribute of an untrusted type."""
    model = registry.load(NAME, version).estimator
    model.payload_ = Payload()
    data: bytes = skops.io.dumps(model)
    assert skops.io.get_untrusted_types(data=data) == [PAYLOAD_TYPE]
    return data


def test_spec_format_skops_registers_a_skops_file_that_predicts_like_joblib(
    registry_path: Path,
) -> None:
    registry = Registry(registry_path)
    joblib_version = _train(registry_path, "joblib")
    skops_version = _train(registry_path, "skops")
    meta = registry.verify(NAME, skops_version)
    assert (meta.format, meta.artifact) == ("skops", "model.skops")
    version_dir = registry.model_dir(NAME) / skops_version
    assert not (version_dir / "model.joblib").exists()
    X, _ = load_breast_cancer(return_X_y=True)
    from_joblib = registry.load(NAME, joblib_version).estimator
    from_skops = registry.load(NAME, skops_version).estimator
    np.testing.assert_array_equal(from_skops.predict_proba(X), from_joblib.predict_proba(X))
    np.testing.assert_array_equal(from_skops.predict(X), from_joblib.predict(X))


@pytest.mark.parametrize(
    "model",
    [
        RandomForestClassifier(n_estimators=3, random_state=0),
        HistGradientBoostingClassifier(max_iter=3),
    ],
    ids=["forest", "hist-gradient-boosting"],
)
def test_tree_models_need_only_sklearn_types(model: object) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    model.fit(X, y)  # type: ignore[attr-defined]
    data = skops.io.dumps(model)
    trusted = skops_trusted_types(data, "model.skops")
    assert trusted and all(t.startswith("sklearn.") for t in trusted)
    loaded = skops.io.loads(data, trusted=trusted)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))  # type: ignore[attr-defined]


def test_a_function_is_not_trusted_even_when_it_is_builtin() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    data = skops.io.dumps(FunctionTransformer(func=eval).fit(X, y))
    with pytest.raises(UntrustedArtifactError, match=r"builtins\.eval"):
        skops_trusted_types(data, "model.skops")


@pytest.mark.slow  # the modelserve CLI as subprocesses
def test_untrusted_type_is_refused_and_its_code_never_runs(
    registry_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(registry_path)
    version = _train(registry_path, "skops")
    evil = _smuggled_model(registry, version)
    _replace_artifact(registry, version, evil)
    marker = tmp_path / "marker"
    monkeypatch.setenv(MARKER_ENV, str(marker))

    # The payload is live: trusting its type would rebuild it (and run its code).
    skops.io.loads(evil, trusted=[PAYLOAD_TYPE])
    assert marker.read_text() == "rebuilt\n"
    marker.unlink()

    with pytest.raises(
        UnsafeArtifactError, match=re.escape(f"outside the allow-list: {PAYLOAD_TYPE}")
    ):
        registry.load(NAME, version)
    with pytest.raises(UnsafeArtifactError, match=re.escape(PAYLOAD_TYPE)):
        registry.set_alias(NAME, "production", version)
    assert registry.aliases(NAME)["production"] == "1"
    assert not marker.exists()

    # A fresh process that could import the payload's module: it is never even imported.
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([registry.metadata(NAME, "1").example]))
    env = {MARKER_ENV: str(marker), "PYTHONPATH": str(ROOT)}
    reg = ["--registry", str(registry_path)]
    predicted = run_cli("predict", NAME, "--alias", version, "--input", str(rows), *reg, env=env)
    promoted = run_cli("promote", NAME, version, *reg, env=env)
    verified = run_cli("verify", NAME, *reg, env=env)
    for result in (predicted, promoted, verified):
        assert result.returncode == 1, result.stdout + result.stderr
        assert PAYLOAD_TYPE in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    assert "refusing to load (nothing was executed)" in predicted.stderr
    assert f"{NAME}\t1\tok" in verified.stdout
    assert not marker.exists(), marker.read_text()


@pytest.mark.slow  # the modelserve CLI as subprocesses
def test_tampered_skops_artifact_is_refused_by_checksum(registry_path: Path) -> None:
    registry = Registry(registry_path)
    version = _train(registry_path, "skops")
    artifact = registry.model_dir(NAME) / version / "model.skops"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match=r"model\.skops: sha256 .* does not match"):
        registry.load(NAME, version)
    result = run_cli("verify", NAME, "--registry", str(registry_path))
    assert result.returncode == 1
    assert f"{NAME}\t{version}\tFAILED: " in result.stdout and "does not match" in result.stdout
