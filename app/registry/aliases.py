"""``aliases.json``: reading it, replacing it atomically, and what its history means.

The file is ``{"aliases": {alias: version}, "history": [entry, ...]}``; every alias move
appends an entry, so the history is the audit trail and the source of rollback targets. The
history rules are pure functions, readable and testable without a registry on disk. Callers
hold the model's writer lock around a read-modify-write.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def read_doc(path: Path) -> dict[str, Any]:
    """The document at ``path``; an absent file is a model with no aliases yet."""
    if not path.is_file():
        return {"aliases": {}, "history": []}
    doc: dict[str, Any] = json.loads(path.read_text())
    doc.setdefault("aliases", {})
    doc.setdefault("history", [])
    return doc


def write_doc(path: Path, doc: Mapping[str, Any]) -> None:
    """Replace ``path`` by rename, so a reader (a polling server) never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def record_move(doc: dict[str, Any], alias: str, version: str, *, reason: str) -> None:
    """Point ``alias`` at ``version`` in ``doc`` and append the move to its history."""
    previous = doc["aliases"].get(alias)
    doc["aliases"][alias] = str(version)
    doc["history"].append(
        {
            "alias": alias,
            "version": str(version),
            "previous": previous,
            "at": datetime.now(UTC).isoformat(),
            "reason": reason,
        }
    )


def alias_stack(history: Iterable[Mapping[str, Any]], alias: str) -> list[str]:
    """The versions ``alias`` has pointed at, oldest first, with rolled-back ones popped.

    History is read as a stack: a promote pushes its version, a rollback pops, so repeated
    rollbacks walk further back instead of flipping between two versions. Re-pointing an
    alias at the version it already has pushes nothing.
    """
    stack: list[str] = []
    for entry in history:
        if entry.get("alias") != alias:
            continue
        version = str(entry["version"])
        if entry.get("reason") == "rollback" and len(stack) > 1:
            stack.pop()
        if not stack or stack[-1] != version:
            stack.append(version)
    return stack


def rollback_target(history: Iterable[Mapping[str, Any]], alias: str) -> str | None:
    """The version a rollback of ``alias`` points at; None when there is no earlier one."""
    stack = alias_stack(history, alias)
    return stack[-2] if len(stack) >= 2 else None
