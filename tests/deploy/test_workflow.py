"""The CI workflow: its shape (jobs, matrix, permissions, pins), and its model job run for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.support import BIN, ROOT, copy_registry

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+|[0-9a-f]{40})$")


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return doc


def steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return found


def test_jobs_and_python_matrix(workflow: dict[str, Any]) -> None:
    assert set(workflow["jobs"]) >= {"lint", "test", "rules", "model", "container", "bench"}
    assert workflow["jobs"]["test"]["strategy"]["matrix"]["python"] == ["3.11", "3.12"]
    runs = " ".join(s.get("run", "") for s in steps(workflow, "test"))
    assert ".ci/apt-packages.txt" in runs and "make unit" in runs
    rules = " ".join(s.get("run", "") for s in steps(workflow, "rules"))
    for command in ("promtool check rules", "promtool test rules", "amtool check-config"):
        assert command in rules
    assert workflow["jobs"]["bench"].get("continue-on-error") is True


def test_least_privilege_and_pinned_actions(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        granted = {k for k, v in job.get("permissions", {}).items() if v == "write"}
        assert granted <= ({"packages"} if name == "container" else set()), (name, granted)
        for step in job["steps"]:
            if "uses" in step:
                assert PINNED.match(step["uses"]), f"{name}: {step['uses']} is not pinned"
            if step.get("uses", "").startswith("actions/setup-python@"):
                assert step["with"]["cache"] == "pip", name


def test_container_pushes_sha_and_semver_tags_only_from_main_and_tags(
    workflow: dict[str, Any],
) -> None:
    job = workflow["jobs"]["container"]
    on = workflow.get("on") or workflow.get(True)  # type: ignore[call-overload]  # YAML 1.1: on = True
    assert on["push"]["branches"] == ["main"] and on["push"]["tags"]
    (meta,) = [s for s in job["steps"] if s.get("uses", "").startswith("docker/metadata-action@")]
    tags = meta["with"]["tags"]
    assert "type=sha" in tags and "type=semver" in tags
    assert job["env"]["IMAGE"].startswith("ghcr.io/")
    pushing = [s for s in job["steps"] if s.get("with", {}).get("push") is True]
    assert pushing and all(s["if"] == "env.PUSH == 'true'" for s in pushing)
    assert "github.event_name == 'push'" in job["env"]["PUSH"]


def test_every_make_target_the_workflow_calls_exists(workflow: dict[str, Any]) -> None:
    runs = " ".join(s.get("run", "") for j in workflow["jobs"].values() for s in j["steps"])
    targets = set(re.findall(r"\bmake ([a-z][\w-]*)", runs))
    assert targets >= {"lint", "typecheck", "unit", "check-deploy", "install"}
    makefile = (ROOT / "Makefile").read_text()
    for target in sorted(targets):
        # A rule, not just a same-named directory (make would call bench/ "up to date").
        assert re.search(rf"^{re.escape(target)}\s*:", makefile, re.MULTILINE), target
        dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, timeout=60)
        assert dry.returncode == 0, f"make {target}: {dry.stderr.decode()}"


def _model_step(workflow: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    job = steps(workflow, "model")
    (train,) = [s for s in job if "modelserve train" in s.get("run", "")]
    (upload,) = [s for s in job if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["if"] == "always()"  # the report is published even when the gate fails
    return train["run"], upload


def _run_step(script: str, checkout: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The step's shell script, as a runner would run it, in a scratch checkout."""
    env = {
        **os.environ,
        "RUNNER_TEMP": str(tmp_path / "runner"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }
    (tmp_path / "runner").mkdir(exist_ok=True)
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """Just enough of a checkout for the model job: the registry, the spec and the venv."""
    root = tmp_path / "checkout"
    copy_registry(root / "models")
    (root / ".venv").symlink_to(BIN.parent)
    return root


def test_model_job_trains_gates_and_publishes_the_comparison(
    workflow: dict[str, Any], checkout: Path, tmp_path: Path
) -> None:
    script, upload = _model_step(workflow)
    done = _run_step(script, checkout, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads((checkout / upload["with"]["path"]).read_text())
    assert report  # the artifact the workflow uploads exists and is JSON
    summary = (tmp_path / "summary.md").read_text()
    assert re.search(r"^\|.*\|$", summary, re.MULTILINE), summary  # a markdown table
    # Trained into the runner's registry copy; the checkout's registry is untouched.
    assert (tmp_path / "runner" / "registry" / "breast-cancer" / "2").is_dir()
    assert not (checkout / "models" / "breast-cancer" / "2").exists()


def test_model_job_fails_when_the_gate_fails(
    workflow: dict[str, Any], checkout: Path, tmp_path: Path
) -> None:
    spec = checkout / "models" / "breast-cancer" / "train.yaml"
    doc = yaml.safe_load(spec.read_text())
    doc["gate"]["thresholds"]["accuracy"] = 0.9999  # unreachable on this data set
    spec.write_text(yaml.safe_dump(doc))
    script, _ = _model_step(workflow)

    done = _run_step(script, checkout, tmp_path)
    assert done.returncode != 0, done.stdout
    assert not (tmp_path / "runner" / "registry" / "breast-cancer" / "2").exists()
