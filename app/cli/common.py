"""What every ``modelserve`` command shares: the ``--registry`` option and error exits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from app.config import Settings
from app.registry.metadata import ModelMetadata
from app.registry.store import Registry
from app.serving.loadcheck import check_in_fresh_process

ReportOpt = Annotated[Path | None, typer.Option("--report", help="Write the JSON report here.")]
SummaryOpt = Annotated[
    Path | None,
    typer.Option("--summary", help="Append a markdown summary (e.g. $GITHUB_STEP_SUMMARY)."),
]
RegistryOpt = Annotated[
    Path | None,
    typer.Option("--registry", help="Registry root (default: $MODELSERVE_REGISTRY or models)."),
]


def open_registry(path: Path | None) -> Registry:
    """The registry at ``--registry``, else where the server would look (the settings).

    Every alias this CLI moves is to a version a fresh process of this environment loads and
    scores: run it where the servers' code and libraries are (their image, their venv).
    """
    root = path or Settings().registry
    return Registry(root, load_check=check_in_fresh_process, annotate=_attribution_reference)


def _attribution_reference(estimator: Any, meta: ModelMetadata) -> ModelMetadata:
    """A new version with what drives its answers on its background rows (``train`` and
    ``register``), imported here: the other commands never pay for the explainers."""
    from app.serving.explain.reference import annotated

    return annotated(estimator, meta)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` to stderr; the caller raises the result to exit with ``code``.

    Returned rather than raised so call sites read ``raise fail(...) from None`` and type
    checkers see that the branch ends there.
    """
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def publish(text: str, doc: dict[str, Any], report: Path | None, summary: Path | None) -> None:
    """Print the markdown summary; write the JSON report and append the summary if asked.

    An empty ``--summary`` (``$GITHUB_STEP_SUMMARY`` unset outside GitHub Actions) is no
    summary, not the current directory.
    """
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    typer.echo(text)
    if summary is not None and str(summary) not in ("", "."):
        with summary.open("a") as fh:
            fh.write(text + "\n")
