"""The scheduled retrain workflow's own commands, run locally against a SQLite prediction log.

Every ``run:`` step of ``.github/workflows/retrain.yml`` (but ``make install``: the venv is
there) is executed as written, with bash, from the checkout, with the workflow's env and what
the runner would provide (RUNNER_TEMP, GITHUB_STEP_SUMMARY, the secret as a sqlite:/// URL).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from app.registry.store import Registry
from tests.helpers.export_log import LABELLED, fill_log
from tests.helpers.queries import read_yaml
from tests.helpers.support import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "retrain.yml"


@pytest.mark.slow  # the workflow's steps: export and train as subprocesses
def test_the_workflow_is_scheduled_and_its_steps_export_train_gate_and_summarise(
    tmp_path: Path,
) -> None:
    doc = read_yaml(WORKFLOW)
    triggers = doc.get("on", doc.get(True))  # PyYAML reads the key `on` as True
    assert triggers["schedule"][0]["cron"]
    (job,) = doc["jobs"].values()
    runs = [s for s in job["steps"] if "run" in s and s["run"] != "make install"]
    assert [s["name"] for s in runs][:1] == ["export production rows"]

    log = tmp_path / "log.db"
    fill_log(f"sqlite:///{log}", Registry(ROOT / "models"), tmp_path)
    summary, runner_temp = tmp_path / "summary.md", tmp_path / "runner"
    runner_temp.mkdir()
    env = {
        **os.environ,
        **{k: str(v) for k, v in doc["env"].items()},
        "MODELSERVE_DATABASE_URL": f"sqlite:///{log}",
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    before = subprocess.run(["git", "status", "--porcelain", "models"], cwd=ROOT, text=True,
                            capture_output=True, check=True).stdout  # fmt: skip
    for step in runs:
        done = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", step["run"]],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, f"{step['name']}:\n{done.stdout}\n{done.stderr}"

    text = summary.read_text()
    assert f"({LABELLED} labelled)" in text
    assert "## modelserve train breast-cancer: registered" in text
    assert "held-out production rows" in text and "production (v1)" in text
    assert "- calibration error " in text
    report = json.loads((runner_temp / "reports" / "retrain-report.json").read_text())
    assert report["status"] == "registered" and report["promoted"] is False
    assert Registry(runner_temp / "registry").resolve("breast-cancer", "production") == "1"
    after = subprocess.run(["git", "status", "--porcelain", "models"], cwd=ROOT, text=True,
                           capture_output=True, check=True).stdout  # fmt: skip
    assert after == before, "the workflow wrote into the checkout's registry"


def test_without_the_secret_the_export_step_fails_with_a_message(tmp_path: Path) -> None:
    doc = read_yaml(WORKFLOW)
    (job,) = doc["jobs"].values()
    (export,) = [s for s in job["steps"] if s.get("name") == "export production rows"]
    env = {**os.environ, "RUNNER_TEMP": str(tmp_path), "GITHUB_STEP_SUMMARY": str(tmp_path / "s")}
    env.pop("MODELSERVE_DATABASE_URL", None)
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", export["run"]], cwd=ROOT, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1 and "MODELSERVE_DATABASE_URL secret" in done.stdout
