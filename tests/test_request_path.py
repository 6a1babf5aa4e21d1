"""docs/architecture.md "One prediction, top to bottom" names exactly the app modules that one
``POST /predict`` runs through: recorded by a profile hook in every thread of a real server on a
socket (``tests/helpers/request_path.py``), not a hand list."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers.support import ROOT, copy_registry

SECTION = "## One prediction, top to bottom"


def documented_modules(text: str) -> list[str]:
    """The ``app/...py`` paths the section names, in the order it first names them."""
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return list(dict.fromkeys(re.findall(r"`(app/[\w/]+\.py)`", section)))


def recorded_modules(registry: Path) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.helpers.request_path", str(registry)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split()


def test_the_docs_name_every_module_one_predict_runs_through(tmp_path: Path) -> None:
    recorded = recorded_modules(copy_registry(tmp_path / "registry"))
    assert "app/serving/runner.py" in recorded  # the hook saw the inference thread
    assert "app/monitoring/sqlite.py" in recorded  # and the prediction log's writer process
    documented = documented_modules((ROOT / "docs" / "architecture.md").read_text())
    assert sorted(documented) == sorted(recorded), (
        f"run but not documented: {sorted(set(recorded) - set(documented))}; "
        f"documented but not run: {sorted(set(documented) - set(recorded))}"
    )


def test_the_section_parser_finds_paths_in_backticks_only() -> None:
    text = (
        f"{SECTION}\n1. `app/a.py` then app/b.py and `app/c/d.py`, `app/a.py`\n## Next\n`app/e.py`"
    )
    assert documented_modules(text) == ["app/a.py", "app/c/d.py"]
