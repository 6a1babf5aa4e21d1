"""docs/guide/lifecycle.md, "Versioning `models/` with DVC", run as written in a clone-like git
repository.

DVC is a tool of the user's, not a dependency of modelserve: the test installs it from PyPI
into ``.venv/tools/dvc`` once (about a minute) and skips only when that is impossible. The
repository is a scratch git repo holding the committed registry, as a checkout has it, with a
local DVC remote so ``dvc push`` runs; afterwards ``dvc pull`` restores the artifact and
``modelserve verify`` accepts it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.readme_snippets import shell_blocks
from tests.helpers.support import BIN, MODELS, ROOT, run_cli

pytestmark = pytest.mark.e2e
TOOL = BIN.parent / "tools" / "dvc"
ARTIFACT = "models/breast-cancer/1/model.joblib"
PAGE = ROOT / "docs" / "guide" / "lifecycle.md"


def _dvc() -> Path:
    dvc = TOOL / "bin" / "dvc"
    if not dvc.exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(TOOL)], capture_output=True)
        pip = subprocess.run(
            [str(TOOL / "bin" / "pip"), "install", "--quiet", "dvc"],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if made.returncode != 0 or pip.returncode != 0:
            shutil.rmtree(TOOL, ignore_errors=True)
            pytest.skip(f"cannot install dvc from PyPI: {pip.stderr[-500:]}")
    return dvc


def _sh(script: str, cwd: Path, dvc: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{dvc.parent}{os.pathsep}{os.environ['PATH']}"}
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", DVC_NO_ANALYTICS="1")
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_dvc_walkthrough_runs_on_a_checkout(tmp_path: Path) -> None:
    (block,) = [b for b in shell_blocks(PAGE) if b.code.startswith("dvc init")]
    dvc = _dvc()
    repo = tmp_path / "repo"
    shutil.copytree(MODELS, repo / "models", ignore=shutil.ignore_patterns(".lock", ".tmp-*"))
    setup = _sh("git init -q && git add models && git commit -qm registry", repo, dvc)
    assert setup.returncode == 0, setup.stderr
    remote = f"dvc remote add -d local {tmp_path / 'remote'}"
    # The remote is the user's own; here a directory, added once `dvc init` has run.
    script = block.code.replace("dvc init\n", f"dvc init\n{remote}\n", 1)
    ran = _sh(script, repo, dvc)
    assert ran.returncode == 0, f"the DVC block failed:\n{ran.stdout}\n{ran.stderr}"
    tracked = _sh("git ls-files models/breast-cancer/1", repo, dvc).stdout.split()
    assert f"{ARTIFACT}.dvc" in tracked and ARTIFACT not in tracked
    (repo / ARTIFACT).unlink()
    assert _sh("dvc pull -q", repo, dvc).returncode == 0
    assert run_cli("verify", "--registry", str(repo / "models")).returncode == 0
