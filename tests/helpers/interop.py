"""The interoperability suite's common ground: each official client in its own virtualenv, the
calls every client makes, and the one check of every answer against the model in-process.

A client's pins clash with the server's (and with each other's), so each lives apart, as a
user's would: a virtualenv built from PyPI once and cached outside the checkout
(``~/.cache/modelserve/interop-venvs/<client>-<pins hash>``), under a file lock so that parallel
test workers build it once. Without PyPI a test skips with pip's words; any other failure to
build fails. A client script (``tests/e2e/interop/clients/``) runs in that venv with a spec
(JSON: the URLs and the calls) and prints a report (JSON: what the client decoded per call);
``check`` compares it with the model called in-process, floats to the last bit.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from app.registry.store import Registry
from tests.helpers.mixed import MIXED, TARGET, churn_frame, register_churn
from tests.helpers.oip_tensors import bits
from tests.helpers.support import ROOT, Server, copy_registry, free_port

DEFAULT = "breast-cancer"
BATCHES = (1, 50)
CLIENTS_DIR = ROOT / "tests" / "e2e" / "interop" / "clients"
# Each client as a user installs it: the pins the issue names, nothing of modelserve's.
CLIENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "tritonclient": (
        ("tritonclient[http,grpc]==2.73.0",), "import tritonclient.http, tritonclient.grpc"
    ),
    "kserve": (("kserve==0.21.0",), "import kserve"),
    "mlserver": (("mlserver==1.7.1", "requests"), "import mlserver.codecs, requests"),
    # mlflow-skinny's invoke() probes find_spec("scipy.sparse"), which raises without scipy.
    "mlflow": (
        ("mlflow-skinny==3.18.0", "pandas", "scipy"), "import mlflow.pyfunc.scoring_server.client"
    ),
}  # fmt: skip
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
VENVS = CACHE / "modelserve" / "interop-venvs"
# pip's words when no index can be reached (as opposed to a resolution or build failure).
OFFLINE = (
    "(from versions: none)", "NewConnectionError", "Max retries exceeded",
    "Temporary failure in name resolution", "Network is unreachable", "ProxyError",
)  # fmt: skip
# How the churn model's features travel as OIP tensors (NaN is a missing tenure).
CHURN_TYPES = {"plan": "BYTES", "country": "BYTES", "seats": "INT64", "monthly_fee": "FP64",
               "autopay": "BOOL", "tenure_months": "FP64"}  # fmt: skip


def _imports(python: Path, probe: str) -> bool:
    return subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0


def client_python(client: str) -> Path:
    """The python of ``client``'s cached venv, built first if need be (atomically, once)."""
    requirements, probe = CLIENTS[client]
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    venv = VENVS / f"{client}-{digest}"
    python = venv / "bin" / "python"
    VENVS.mkdir(parents=True, exist_ok=True)
    with (VENVS / f"{client}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and _imports(python, probe):
            return python
        _build(venv, requirements)
    assert _imports(python, probe), f"{venv} was built but cannot run {probe!r}"
    return python


def _build(venv: Path, requirements: tuple[str, ...]) -> None:
    building = venv.with_name(f"{venv.name}.building")
    shutil.rmtree(building, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, timeout=120)
        pip = subprocess.run(
            [str(building / "bin" / "python"), "-m", "pip", "install", "--quiet",
             "--disable-pip-version-check", *requirements],
            capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        if pip.returncode != 0:
            error = (pip.stdout + pip.stderr)[-1500:]
            if any(marker in error for marker in OFFLINE):
                pytest.skip(f"cannot install {requirements} from PyPI:\n{error}")
            pytest.fail(f"pip install {requirements} failed:\n{error}")
        shutil.rmtree(venv, ignore_errors=True)
        # A venv's scripts name its own path: build in place of the final name's sibling, then
        # move; console scripts are called as `python -m`, so the shebangs never matter.
        building.rename(venv)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def run_client(client: str, script: str, spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Run ``clients/<script>`` in ``client``'s venv with ``spec``; its JSON report."""
    python = client_python(client)
    path = workdir / f"{script}.spec.json"
    path.write_text(json.dumps(spec))
    ran = subprocess.run(
        [str(python), str(CLIENTS_DIR / script), str(path)],
        capture_output=True, text=True, timeout=300, cwd=workdir,
    )  # fmt: skip
    assert ran.returncode == 0, f"{script} failed:\n{ran.stderr[-4000:]}"
    report: dict[str, Any] = json.loads(ran.stdout)
    return report


# ---- the models and the rows every client sends ----------------------------------------------


@dataclass(frozen=True)
class Served:
    """``modelserve serve`` with the default model and the churn pipeline, HTTP and gRPC."""

    http: str  # host:port
    grpc: str  # host:port
    models: dict[str, Any]
    server: Server

    @property
    def url(self) -> str:
        return f"http://{self.http}"


def cancer_rows() -> npt.NDArray[np.float64]:
    data = np.asarray(load_breast_cancer().data, dtype=np.float64)
    return data[np.random.default_rng(5).permutation(len(data))[: max(BATCHES)]].copy()


def churn_rows() -> pd.DataFrame:
    """Rows the model never saw, the first with its tenure missing (NaN), a few more so."""
    frame = churn_frame(200, seed=23).drop(columns=TARGET)
    missing = np.flatnonzero(frame["tenure_months"].isna().to_numpy())
    order = [int(missing[0]), *(k for k in range(len(frame)) if k != missing[0])]
    picked = frame.iloc[order[: max(BATCHES)]].reset_index(drop=True)
    assert picked["tenure_months"].isna().sum() >= 3
    return picked


def rows(model: str, n: int) -> Any:
    """The first ``n`` rows sent to ``model``: an array (default model) or a DataFrame."""
    return cancer_rows()[:n] if model == DEFAULT else churn_rows().head(n)


def columns(n: int) -> dict[str, list[Any]]:
    """The churn rows as columns of JSON values (NaN for a missing tenure)."""
    return {str(name): values.tolist() for name, values in churn_rows().head(n).items()}


def v2_calls(protocols: tuple[str, str]) -> list[dict[str, Any]]:
    """One OIP v2 inference per protocol, batch, model and outputs asked for (none, or both):
    the default model's rows as one FP64 tensor, the churn pipeline's as a tensor per column."""
    calls = []
    for protocol in protocols:
        for n in BATCHES:
            cancer = [{"name": "input-0", "datatype": "FP64", "values": cancer_rows()[:n].tolist()}]
            churn = [
                {"name": name, "datatype": CHURN_TYPES[name], "values": values}
                for name, values in columns(n).items()
            ]
            for model, inputs in ((DEFAULT, cancer), (MIXED, churn)):
                for outputs in (None, ["predict", "predict_proba"]):
                    calls.append(
                        {"protocol": protocol, "model": model, "inputs": inputs,
                         "outputs": outputs, "n": n}
                    )  # fmt: skip
    return calls


@contextlib.contextmanager
def serve(workdir: Path) -> Iterator[Served]:
    """A real server on loopback ports with both models registered, ready on HTTP and gRPC."""
    registry = copy_registry(workdir / "models")
    register_churn(registry, workdir)
    grpc_port = free_port()
    env = {"MODELSERVE_POLL_INTERVAL_S": "0", "MODELSERVE_LOG_LEVEL": "warning",
           "MODELSERVE_GRPC_PORT": str(grpc_port)}  # fmt: skip
    store = Registry(registry)
    models = {name: store.load(name, "1").estimator for name in (DEFAULT, MIXED)}
    with Server(registry, workdir=workdir, env=env) as server:
        server.wait_ready()
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        yield Served(f"127.0.0.1:{server.port}", f"127.0.0.1:{grpc_port}", models, server)


def check(
    served: Served, model: str, n: int, labels: list[Any], proba: list[Any] | None, where: str
) -> None:
    """``labels`` (and ``proba``, flat) are the model's own answers to the first ``n`` rows:
    equal, of the same JSON types, floats to the last bit."""
    estimator, X = served.models[model], rows(model, n)
    want = estimator.predict(X).tolist()
    assert labels == want, f"{where}: predict {labels[:5]}... is not the model's {want[:5]}..."
    assert [type(v) for v in labels] == [type(v) for v in want], f"{where}: label types differ"
    if proba is not None:
        expected = bits(estimator.predict_proba(X).ravel().tolist())
        assert bits(proba) == expected, f"{where}: predict_proba differs from the model's"
