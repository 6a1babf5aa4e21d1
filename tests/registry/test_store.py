"""Loading refuses tampered artifacts before any pickle code runs, and checks sklearn versions."""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import joblib
import pytest
import sklearn

from app.registry.integrity import check_sklearn_version
from app.registry.store import ChecksumMismatchError, IncompatibleVersionError, Registry
from tests.helpers.support import Server

MODEL, VERSION = "breast-cancer", "1"


class _Booby:
    """Unpickling this creates ``marker``: the code a malicious artifact would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _artifact(root: Path) -> Path:
    return root / MODEL / VERSION / "model.joblib"


def _plant_booby_trap(root: Path, marker: Path) -> None:
    """Replace the artifact with a code-running pickle, leaving metadata's sha256 as it was."""
    _artifact(root).write_bytes(pickle.dumps(_Booby(marker)))


def _set_recorded_sklearn(root: Path, version: str) -> None:
    path = root / MODEL / VERSION / "metadata.json"
    meta = json.loads(path.read_text())
    meta["sklearn_version"] = version
    path.write_text(json.dumps(meta))


def test_one_changed_byte_is_refused_naming_file_and_checksums(registry_path: Path) -> None:
    registry = Registry(registry_path)
    recorded = registry.metadata(MODEL, VERSION).sha256
    artifact = _artifact(registry_path)
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))

    with pytest.raises(ChecksumMismatchError) as refused:
        registry.load(MODEL, VERSION)
    message = str(refused.value)
    assert str(artifact) in message
    assert recorded in message
    assert hashlib.sha256(bytes(data)).hexdigest() in message
    with pytest.raises(ChecksumMismatchError):
        registry.verify(MODEL, VERSION)


def test_malicious_pickle_is_refused_before_it_runs(registry_path: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _plant_booby_trap(registry_path, marker)

    with pytest.raises(ChecksumMismatchError, match="does not match"):
        Registry(registry_path).load(MODEL, VERSION)
    assert not marker.exists()

    # Control: the planted artifact really runs code when unpickled, so the refusal mattered.
    joblib.load(_artifact(registry_path))
    assert marker.exists()


def test_sklearn_major_mismatch_refused_minor_warns(
    registry_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry(registry_path)
    major, minor = (int(p) for p in sklearn.__version__.split(".")[:2])

    _set_recorded_sklearn(registry_path, f"{major - 1}.{minor}.0")
    with pytest.raises(IncompatibleVersionError, match="major versions differ"):
        registry.load(MODEL, VERSION)

    other_minor = f"{major}.{minor + 1}.0"
    _set_recorded_sklearn(registry_path, other_minor)
    with caplog.at_level(logging.WARNING, logger="app.registry.integrity"):
        loaded = registry.load(MODEL, VERSION)
    assert loaded.estimator.predict([loaded.metadata.example]).shape == (1,)
    assert any(other_minor in r.getMessage() and "minor" in r.getMessage() for r in caplog.records)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="app.registry.integrity"):
        check_sklearn_version(sklearn.__version__)
    assert not caplog.records


@pytest.mark.e2e
def test_server_on_tampered_registry_stays_not_ready(
    registry_path: Path, tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    marker = tmp_path / "pwned-by-server"
    _plant_booby_trap(registry_path, marker)
    server = server_factory(registry_path, env={"MODELSERVE_POLL_INTERVAL_S": "0.2"})

    # Wait until the load was attempted and refused (liveness answers throughout).
    deadline = time.monotonic() + 60
    error = None
    while error is None and time.monotonic() < deadline:
        try:
            ready = httpx.get(server.url + "/health/ready", timeout=2)
            assert ready.status_code == 503
            error = ready.json()["models"][MODEL]["error"]
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    assert error is not None, server.logs()
    assert "sha256" in error and "does not match" in error and "model.joblib" in error
    assert httpx.get(server.url + "/health/live", timeout=10).status_code == 200

    # It stays refused across several alias polls, /predict says why, and no pickle code ran.
    for _ in range(5):
        time.sleep(0.3)
        ready = httpx.get(server.url + "/health/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["models"][MODEL]["ready"] is False
    predict = httpx.post(server.url + "/predict", json={"instances": [[1.0] * 30]}, timeout=10)
    assert predict.status_code == 503
    assert predict.json()["error"]["type"] == "not_ready"
    assert "does not match" in predict.json()["error"]["message"]
    assert not marker.exists()
    assert "refusing to load" in server.logs()
