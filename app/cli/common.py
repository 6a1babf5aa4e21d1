"""What every ``modelserve`` command shares: the ``--registry`` option and error exits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.config import Settings
from app.registry.store import Registry

RegistryOpt = Annotated[
    Path | None,
    typer.Option("--registry", help="Registry root (default: $MODELSERVE_REGISTRY or models)."),
]


def open_registry(path: Path | None) -> Registry:
    """The registry at ``--registry``, else where the server would look (the settings)."""
    return Registry(path or Settings().registry)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` to stderr; the caller raises the result to exit with ``code``.

    Returned rather than raised so call sites read ``raise fail(...) from None`` and type
    checkers see that the branch ends there.
    """
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)
