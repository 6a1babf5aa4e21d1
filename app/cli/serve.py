"""``modelserve serve``: flags into settings; ``app.server.run`` does the serving."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from app.cli.common import RegistryOpt, fail
from app.config import Settings


def serve(
    host: Annotated[str | None, typer.Option(help="Interface (MODELSERVE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (MODELSERVE_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (MODELSERVE_WORKERS).")] = None,
    registry: RegistryOpt = None,
    model: Annotated[str | None, typer.Option(help="Default model (MODELSERVE_MODEL).")] = None,
    alias: Annotated[str | None, typer.Option(help="Alias to serve (MODELSERVE_ALIAS).")] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Prediction log: sqlite:///path or postgresql://... (MODELSERVE_DATABASE_URL)."
        ),
    ] = None,
) -> None:
    """Serve the registry over HTTP (POST /predict, /metrics, /docs)."""
    from app.registry.store import Registry
    from app.server.run import run_server
    from app.serving.default_model import StartupError, choose_default_model

    overrides = {
        "host": host,
        "port": port,
        "workers": workers,
        "registry": registry,
        "model": model,
        "alias": alias,
        "database_url": database_url,
    }
    for key, value in overrides.items():
        if value is not None:  # flags beat env: hand them to every worker through env
            os.environ[f"MODELSERVE_{key.upper()}"] = str(value)
    settings = Settings()
    try:
        choose_default_model(settings, Registry(settings.registry))
    except StartupError as exc:
        raise fail(str(exc)) from None
    run_server(settings)
