"""The layer contracts of docs/architecture.md hold, and the check that enforces them bites."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
MAX_MODULE_LINES = 300


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # this tree's ``app``, not the installed one
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_layer_contracts_hold() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("metrics.py", "app.api.errors"),  # the base layer imports nothing of the app
        ("errors.py", "app.config"),  # nor does one base module import another
        ("serving/manager.py", "app.api.deps"),  # serving never reaches up into the API
        ("serving/scoring.py", "app.monitoring.predlog"),  # siblings stay independent
        ("registry/store.py", "app.serving.runner"),
        ("training/train.py", "app.serving.batching"),
    ],
)
def test_a_forbidden_import_breaks_the_check(tmp_path: Path, module: str, forbidden: str) -> None:
    shutil.copytree(APP, tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "app" / module).open("a") as fh:
        fh.write(f"\nimport {forbidden}  # noqa: E402, F401\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0, done.stdout
    assert "1 broken" in done.stdout
    importer = "app." + module.removesuffix(".py").replace("/", ".")
    assert f"{importer} -> {forbidden}" in done.stdout


def test_no_module_is_over_300_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in APP.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_every_app_folder_is_a_package() -> None:
    """A folder without __init__.py is a namespace package the layer check cannot see."""
    folders = {p.parent for p in APP.rglob("*.py") if "__pycache__" not in p.parts}
    assert [f for f in folders if not (f / "__init__.py").is_file()] == []


def _similarities(root: Path, target: str) -> subprocess.CompletedProcess[str]:
    pylint = str(Path(sys.executable).parent / "pylint")
    args = [pylint, "--rcfile", str(ROOT / "pyproject.toml"), "--disable=all"]
    return subprocess.run(
        [*args, "--enable=duplicate-code", target],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_copy_check_finds_a_block_of_six_lines(tmp_path: Path) -> None:
    """``make lint`` runs the same check on app/; here it must bite on a planted copy."""
    block = "".join(f"    total = total * {k} + len(values) - {k}\n" for k in range(6))
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("one", "two"):
        (package / f"{name}.py").write_text(
            f"def {name}(values: list[int]) -> int:\n    total = 0\n{block}    return total\n"
        )
    done = _similarities(tmp_path, "pkg")
    assert done.returncode != 0 and "Similar lines in 2 files" in done.stdout, done.stdout
    (package / "two.py").write_text("def two() -> int:\n    return 2\n")
    assert _similarities(tmp_path, "pkg").returncode == 0
