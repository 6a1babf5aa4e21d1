"""Run a ``scripts`` test driver (the stack test, the Kubernetes test) as pytest sees it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.support import ROOT


def run_driver(module: str, tag: str) -> None:
    """``python -m module``, its output streamed, not captured: a phase that hangs shows in
    CI's log before make's timeout hits. Its ``<tag> SKIPPED: why`` line is a pytest skip;
    anything but exit 0 with ``<tag> passed`` fails, with the output's tail."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", module],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    out = []
    for line in proc.stdout:
        sys.stdout.write(line)
        out.append(line)
    text = "".join(out)
    assert proc.wait(60) == 0, text[-4000:]
    if f"{tag} SKIPPED" in text:
        pytest.skip(text.split(f"{tag} SKIPPED: ", 1)[1].strip())
    assert f"{tag} passed" in text
