"""Committed files generated from their sources: write the stale ones, or name them (--check)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def write_or_check(files: Mapping[Path, str], check: bool, command: str) -> int:
    """Write each file whose text differs (0), or with ``check`` list them and return 1."""
    stale = []
    for path, text in files.items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if check:
            stale.append(shown(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {shown(path)}")
    if stale:
        print(f"stale: {', '.join(stale)}; run: {command}", file=sys.stderr)
        return 1
    return 0
