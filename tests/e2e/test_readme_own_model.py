"""README "Serve your own model", run as written: notebook dump, register, serve, curl."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import joblib
import pandas as pd
import pytest

from tests.helpers.support import BIN, ROOT, Server

SECTION = re.compile(r"^## Serve your own model\n(.*?)^## ", re.S | re.M)
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def _blocks() -> list[str]:
    match = SECTION.search((ROOT / "README.md").read_text())
    assert match, "README has no 'Serve your own model' section"
    return BLOCK.findall(match.group(1))


def _bash(script: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("MODELSERVE_REGISTRY", None)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.e2e
def test_the_walkthrough_serves_a_mixed_type_notebook_model(tmp_path: Path) -> None:
    setup, notebook, register_and_serve, requests = _blocks()
    # The set-up block activates the venv and makes the working folder: PATH and tmp_path here.
    assert ". .venv/bin/activate" in setup
    _bash(notebook, tmp_path)
    register, serve = register_and_serve.strip().splitlines()
    _bash(register, tmp_path)
    assert serve == "MODELSERVE_REGISTRY=my-models modelserve serve"

    # Only the registry is set, as in the README (the port is this test's own).
    server = Server(tmp_path / "my-models", workdir=tmp_path)
    server.env.pop("MODELSERVE_MODEL", None)
    with server:
        server.wait_ready()
        out = _bash(requests.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}"), tmp_path)
    predicted, invoked = (json.loads(line) for line in out.replace("}{", "}\n{").splitlines())

    model = joblib.load(tmp_path / "churn.joblib")
    row = pd.DataFrame(
        [["basic", "fr", 3, 42.5, True, float("nan")], ["pro", "us", 12, 25.0, False, 7.0]],
        columns=["plan", "country", "seats", "monthly_fee", "autopay", "tenure_months"],
    )
    assert predicted["model"] == "churn" and predicted["version"] == "1"
    assert predicted["predictions"] == model.predict(row.iloc[:1]).tolist()
    assert predicted["probabilities"] == model.predict_proba(row.iloc[:1]).tolist()
    assert invoked == {"predictions": model.predict(row.iloc[1:]).tolist()}
