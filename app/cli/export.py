"""``modelserve export``: logged predictions (and their labels) as a training table.

The work is in ``app.monitoring.export``; the log is the server's (``MODELSERVE_DATABASE_URL``,
else the SQLite file beside the registry or ``MODELSERVE_PREDICTION_LOG``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import RegistryOpt, fail, open_registry


def export(
    name: Annotated[str, typer.Argument(help="Registry model name.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="FILE.csv or FILE.parquet to write.")
    ],
    version: Annotated[
        str | None,
        typer.Option(help="Only rows this version answered (default: every version)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only rows logged in the last 30m, 12h, 7d, 2w...")
    ] = None,
    labeled_only: Annotated[bool, typer.Option(help="Only rows whose label arrived.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """Write logged inputs in training column order with label, prediction, version, time."""
    from app.config import Settings
    from app.monitoring.export import ExportError, Query, export, log_batches, parse_since
    from app.registry.store import RegistryError
    from app.training.compare import production_of

    settings = Settings() if registry is None else Settings(registry=registry)
    reg = open_registry(registry)
    try:
        if version is not None:
            meta = reg.metadata(name, version)
        else:  # columns of production, else of the newest version
            current = production_of(reg, name)
            meta = current[1] if current else reg.metadata(name, reg.versions(name)[-1])
        query = Query(name, version, parse_since(since, time.time()), labeled_only)
        batches = log_batches(settings.database_url, settings.prediction_log_path, query)
        done = export(reg, batches, meta, output)
    except (ExportError, RegistryError) as exc:
        raise fail(str(exc)) from None
    typer.echo(
        f"exported {done.rows} rows of {name} ({done.labelled} labelled) to {output}, "
        f"columns of version {meta.version}"
    )
