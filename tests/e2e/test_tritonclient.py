"""NVIDIA's tritonclient, unmodified and in its default settings, against a real server.

``tritonclient.http`` sends tensors as binary data by default (issue #24, point 1). It is a
user's client, not a dependency of modelserve (its pins clash with ours), so it lives in its
own virtualenv, built from PyPI once and cached outside the checkout
(``~/.cache/modelserve/interop-venvs/tritonclient-<version>``). The client script
(``tests/helpers/tritonclient_infer.py``) runs in it against ``modelserve serve`` on a
loopback port: the default model as one ``[N, 30]`` FP64 tensor, and the mixed-type churn
model as one tensor per feature (BYTES from object arrays of str, INT64, FP64 with NaN for a
missing tenure, BOOL), batches of 1 and 50, with no requested outputs (the client then asks
for all outputs as binary) and with ``predict`` and ``predict_proba`` requested (binary by
default). Every value must be what the model returns in-process, floats to the last bit.
Without PyPI the test skips with pip's error; any other failure to build the venv fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from app.registry.store import Registry
from tests.helpers.mixed import MIXED, TARGET, churn_frame, register_churn
from tests.helpers.support import ROOT, Server, copy_registry

pytestmark = pytest.mark.e2e

VERSION = "2.73.0"
REQUIREMENT = f"tritonclient[http]=={VERSION}"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
VENV = CACHE / "modelserve" / "interop-venvs" / f"tritonclient-{VERSION}"
SCRIPT = ROOT / "tests" / "helpers" / "tritonclient_infer.py"
DEFAULT = "breast-cancer"
CHURN_TYPES = {"plan": "BYTES", "country": "BYTES", "seats": "INT64", "monthly_fee": "FP64",
               "autopay": "BOOL", "tenure_months": "FP64"}  # fmt: skip
# pip's words when no index can be reached (as opposed to a resolution or build failure).
OFFLINE = (
    "(from versions: none)", "NewConnectionError", "Max retries exceeded",
    "Temporary failure in name resolution", "Network is unreachable", "ProxyError",
)  # fmt: skip


def _imports(python: Path) -> bool:
    done = subprocess.run([str(python), "-c", "import tritonclient.http"], capture_output=True)
    return done.returncode == 0


def tritonclient_python() -> Path:
    """The cached venv's python, built first if need be (atomically: a failed or interrupted
    build leaves nothing that looks usable)."""
    python = VENV / "bin" / "python"
    if python.exists() and _imports(python):
        return python
    VENV.parent.mkdir(parents=True, exist_ok=True)
    building = VENV.with_name(f"{VENV.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, timeout=120)
        pip = subprocess.run(
            [str(building / "bin" / "python"), "-m", "pip", "install", "--quiet",
             "--disable-pip-version-check", REQUIREMENT],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if pip.returncode != 0:
            error = (pip.stdout + pip.stderr)[-1500:]
            if any(marker in error for marker in OFFLINE):
                pytest.skip(f"cannot install {REQUIREMENT} from PyPI:\n{error}")
            pytest.fail(f"pip install {REQUIREMENT} failed:\n{error}")
        shutil.rmtree(VENV, ignore_errors=True)
        building.rename(VENV)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    assert _imports(python), f"{VENV} was built but cannot import tritonclient.http"
    return python


def _cancer_rows() -> np.ndarray[Any, np.dtype[np.float64]]:
    data = np.asarray(load_breast_cancer().data, dtype=np.float64)
    return data[np.random.default_rng(5).permutation(len(data))[:50]].copy()


def _churn_rows() -> pd.DataFrame:
    """50 rows the model never saw, the first with its tenure missing (NaN) and a few more."""
    frame = churn_frame(200, seed=23).drop(columns=TARGET)
    missing = np.flatnonzero(frame["tenure_months"].isna().to_numpy())
    order = [int(missing[0]), *(k for k in range(len(frame)) if k != missing[0])]
    picked = frame.iloc[order[:50]].reset_index(drop=True)
    assert picked["tenure_months"].isna().sum() >= 3
    return picked


def _calls(cancer: np.ndarray[Any, Any], churn: pd.DataFrame) -> list[dict[str, Any]]:
    calls = []
    for n in (1, 50):
        cancer_inputs = [{"name": "input-0", "datatype": "FP64", "values": cancer[:n].tolist()}]
        churn_inputs = [
            {"name": name, "datatype": CHURN_TYPES[name], "values": churn[name].iloc[:n].tolist()}
            for name in churn.columns
        ]
        for model, inputs in ((DEFAULT, cancer_inputs), (MIXED, churn_inputs)):
            for outputs in (None, ["predict", "predict_proba"]):
                calls.append({"model": model, "inputs": inputs, "outputs": outputs, "n": n})
    return calls


def _bits(values: list[Any]) -> list[Any]:
    return [v.hex() if isinstance(v, float) else v for v in values]


def test_tritonclient_defaults_get_the_models_own_answers(tmp_path: Path) -> None:
    python = tritonclient_python()
    registry = copy_registry(tmp_path / "models")
    register_churn(registry, tmp_path)
    cancer, churn = _cancer_rows(), _churn_rows()
    calls = _calls(cancer, churn)
    env = {"MODELSERVE_POLL_INTERVAL_S": "0", "MODELSERVE_LOG_LEVEL": "warning"}
    with Server(registry, workdir=tmp_path, env=env) as server:
        server.wait_ready()
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps({"url": f"127.0.0.1:{server.port}", "calls": calls}))
        ran = subprocess.run(
            [str(python), str(SCRIPT), str(spec)], capture_output=True, text=True, timeout=120
        )
        assert ran.returncode == 0, f"{ran.stderr[-3000:]}\n--- server log:\n{server.logs()}"
    report = json.loads(ran.stdout)
    assert "binary_tensor_data" in report["extensions"]
    store = Registry(registry)
    models = {name: store.load(name, "1").estimator for name in (DEFAULT, MIXED)}
    for call, got in zip(calls, report["calls"], strict=True):
        n, model = call["n"], models[call["model"]]
        X = cancer[:n] if call["model"] == DEFAULT else churn.head(n)
        where = f"{call['model']}, {n} rows, outputs {call['outputs']}"
        # Every output came back as binary tensor data, as the client asked by default.
        sizes = [
            o.get("parameters", {}).get("binary_data_size") for o in got["response"]["outputs"]
        ]
        assert all(isinstance(s, int) and s > 0 for s in sizes), (where, got["response"])
        predict = got["outputs"]["predict"]
        labels = model.predict(X)
        assert predict["shape"] == [n], where
        assert predict["dtype"] == ("int64" if call["model"] == DEFAULT else "object"), where
        assert predict["values"] == labels.tolist(), where
        if call["outputs"] is None:
            assert list(got["outputs"]) == ["predict"], where  # modelserve's default output
            continue
        proba = got["outputs"]["predict_proba"]
        assert proba["dtype"] == "float64" and proba["shape"] == [n, 2], where
        assert _bits(proba["values"]) == _bits(model.predict_proba(X).ravel().tolist()), where
