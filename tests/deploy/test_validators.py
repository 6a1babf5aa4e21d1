"""Every ``make check-deploy`` validator passes on the real file and fails on a broken copy.

The breaks are chosen so each tool catches something the others would not: an unknown
``depends_on`` service (compose semantics), a key outside the compose spec, a misspelt matrix
variable (actionlint), a root user (hadolint), an undefined Alertmanager receiver, ...
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.check_deploy import CHECKS, run_check


def _replace(old: str, new: str) -> Callable[[Path], None]:
    def brk(path: Path) -> None:
        text = path.read_text()
        assert old in text, f"{path.name} no longer contains {old!r}: update the break"
        path.write_text(text.replace(old, new, 1))

    return brk


def _edit_yaml(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def brk(path: Path) -> None:
        doc = yaml.safe_load(path.read_text())
        change(doc)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))

    return brk


def _drop_lint_timeout(doc: dict[str, Any]) -> None:
    del doc["jobs"]["lint"]["timeout-minutes"]


def _unknown_receiver(doc: dict[str, Any]) -> None:
    doc["route"]["receiver"] = "nobody-configured-this"


def _bad_interval(doc: dict[str, Any]) -> None:
    doc["global"]["scrape_interval"] = "every now and then"


BREAKS: dict[str, Callable[[Path], None]] = {
    # Schema-valid, but compose itself refuses a dependency on a service that does not exist.
    "compose-config": _replace(
        "      alertmanager:\n        condition:", "      alertmgr:\n        condition:"
    ),
    "compose-schema": _replace(
        "    read_only: true\n", "    read_only: true\n    readonly_rootfs: true\n"
    ),
    "workflow-schema": _replace("    runs-on: ubuntu-24.04\n", "    runs_on: ubuntu-24.04\n"),
    "workflow-timeouts": _edit_yaml(_drop_lint_timeout),
    "dependabot-schema": _replace("interval: weekly", "interval: fortnightly"),
    "hadolint": _replace("USER 10001:10001", "USER root"),
    # Valid YAML and schema; only actionlint knows the matrix has no such key.
    "actionlint": _replace("${{ matrix.python }}", "${{ matrix.pyhton }}"),
    "promtool-config": _edit_yaml(_bad_interval),
    "amtool-config": _edit_yaml(_unknown_receiver),
}


def test_every_check_has_a_break() -> None:
    assert set(BREAKS) == set(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_validator_passes_on_the_real_file_and_fails_on_a_broken_copy(
    name: str, tmp_path: Path
) -> None:
    check = CHECKS[name]
    real = check.default_files()
    assert real and all(p.is_file() for p in real), real

    good = run_check(check)
    assert good.returncode == 0, good.stdout + good.stderr

    # Only the first file is broken; the copy keeps its name (tools key on it, e.g. Dockerfile).
    copies = []
    for i, path in enumerate(real):
        (tmp_path / str(i)).mkdir()
        copies.append(Path(shutil.copy(path, tmp_path / str(i) / path.name)))
    intact = run_check(check, copies)
    assert intact.returncode == 0, intact.stdout + intact.stderr  # copying alone breaks nothing

    BREAKS[name](copies[0])
    broken = run_check(check, copies)
    assert broken.returncode != 0, f"{name} accepted a broken {real[0].name}:\n{broken.stdout}"
