"""``make stack-test`` on a machine where no Docker engine can start: a clear skip, exit 0.

A ``dockerd`` that fails at once (as it does without the kernel features it needs) and a
``docker`` client that finds no engine stand in for such a machine; nothing real is touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.support import BIN, ROOT


def _fake(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def test_an_engine_that_cannot_start_is_a_skip_naming_why(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    _fake(fake_bin, "docker", "echo 'Cannot connect to the Docker daemon' >&2; exit 1")
    _fake(fake_bin, "dockerd", "echo 'failed to mount overlay: operation not permitted'; exit 1")
    _fake(fake_bin, "mmdebstrap", "exit 1")
    env = {
        **os.environ,
        "PATH": f"{fake_bin}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}",
        "STACK_TEST_STATE": str(tmp_path / "state"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "scripts.stack_test"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stack-test SKIPPED: the Docker engine cannot start here: dockerd did not start" in (
        done.stdout
    )
    assert "failed to mount overlay: operation not permitted" in done.stdout
