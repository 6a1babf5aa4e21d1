"""A short soak in every CI run (the 10-minute one is `make soak`): mixed traffic, no errors,
no memory growth over 10 %; the figures are printed into the test log."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.marks import LOAD_SENSITIVE
from tests.helpers.support import ROOT


@pytest.mark.e2e
@LOAD_SENSITIVE
def test_short_soak_has_no_errors_and_no_memory_growth(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scripts.soak", "--duration", "40"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    with capsys.disabled():
        print("\n" + result.stdout.strip())
    assert result.returncode == 0, result.stdout + result.stderr
