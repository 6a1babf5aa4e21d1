"""A skops version trained and promoted through the real CLI is served by a real server with
predictions identical to the joblib version of the same spec, and scored alike by the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.datasets import load_breast_cancer

from tests.helpers.lifecycle import DEFAULT_SPEC, NAME, metric_value, wait_for_version
from tests.helpers.support import Server, run_cli

pytestmark = pytest.mark.e2e


def _train(registry: Path, *extra: str) -> str:
    result = run_cli(
        "train", str(DEFAULT_SPEC), "--registry", str(registry), "--set", "split.cv_folds=0", *extra
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if "registered breast-cancer version" in x)
    return line.split("version ")[1].split(",")[0]


def _predict_all(url: str, rows: list[list[float]]) -> dict[str, Any]:
    response = httpx.post(f"{url}/predict", json={"instances": rows}, timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_skops_version_serves_the_same_predictions_as_joblib(
    registry_path: Path, tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    joblib_version = _train(registry_path)
    skops_version = _train(registry_path, "--format", "skops")
    assert (registry_path / NAME / skops_version / "model.skops").is_file()
    reg = ("--registry", str(registry_path))
    assert run_cli("promote", NAME, joblib_version, *reg).returncode == 0

    server = server_factory(registry_path, env={"MODELSERVE_POLL_INTERVAL_S": "1"})
    server.wait_ready()
    rows = load_breast_cancer().data.tolist()
    before = _predict_all(server.url, rows)
    assert before["version"] == joblib_version

    promoted = run_cli("promote", NAME, skops_version, *reg)
    assert promoted.returncode == 0, promoted.stderr
    wait_for_version(server.url, skops_version, timeout=30)
    after = _predict_all(server.url, rows)
    assert after["version"] == skops_version
    assert after["predictions"] == before["predictions"]
    assert after["probabilities"] == before["probabilities"]  # exact, not approximately
    sha = json.loads((registry_path / NAME / skops_version / "metadata.json").read_text())["sha256"]
    assert metric_value(server.url, "modelserve_model_info", version=skops_version, sha256=sha)

    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps(rows))
    scored = run_cli("predict", NAME, "--input", str(rows_file), *reg)
    assert scored.returncode == 0, scored.stderr
    lines = [json.loads(x) for x in scored.stdout.splitlines()]
    assert {x["version"] for x in lines} == {skops_version}
    assert [x["prediction"] for x in lines] == after["predictions"]
    assert [x["probabilities"] for x in lines] == after["probabilities"]
    verified = run_cli("verify", NAME, *reg)
    assert verified.returncode == 0 and f"{NAME}\t{skops_version}\tok" in verified.stdout
