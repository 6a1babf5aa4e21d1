"""Real filesystem faults for tests: a tiny tmpfs that fills up, a read-only view of a directory.

Mounting needs root (CAP_SYS_ADMIN). As root, permission bits do not stop writes, so a
read-only *mount* is the only honest read-only registry; as another user, removing the write
bits is. A tiny tmpfs has no unprivileged substitute: tests needing one skip and say why.
Every mount is undone (lazily, so a file still open cannot keep it) when the block exits.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path


def can_mount() -> bool:
    return os.geteuid() == 0 and Path("/proc/self/mountinfo").is_file()


def _run(*cmd: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise OSError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size_kib: int) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(path))
    try:
        yield path
    finally:
        _run("umount", "-l", str(path))


def fill(directory: Path, name: str = "filler") -> int:
    """Write zeros into ``directory/name`` until the filesystem says ENOSPC; bytes written."""
    written = 0
    chunk = b"\0" * 4096
    with (directory / name).open("wb", buffering=0) as fh:
        while True:
            try:
                written += fh.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return written


@contextlib.contextmanager
def read_only_view(source: Path, view: Path) -> Iterator[Path]:
    """``view`` shows ``source`` and refuses every write to it, for this user."""
    view.mkdir(parents=True, exist_ok=True)
    if can_mount():
        _run("mount", "--bind", str(source), str(view))
        try:
            _run("mount", "-o", "remount,bind,ro", str(view))
            yield view
        finally:
            _run("umount", "-l", str(view))
        return
    view.rmdir()
    source.rename(view)
    paths = [view, *view.rglob("*")]
    modes = {p: p.stat().st_mode for p in paths}
    write_bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    for p in sorted(paths, reverse=True):  # children first, while their parent is writable
        p.chmod(modes[p] & ~write_bits)
    try:
        yield view
    finally:
        for p in sorted(paths):
            p.chmod(modes[p])
