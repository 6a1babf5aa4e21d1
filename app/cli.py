"""The ``modelserve`` command line: serve, inspect the registry, score files locally."""

from __future__ import annotations

import csv
import math
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
import typer

from app import cli_lifecycle
from app.config import Settings
from app.registry.store import Registry, RegistryError

cli = typer.Typer(
    name="modelserve",
    help="Serve versioned scikit-learn models over HTTP, watched by Prometheus.",
    no_args_is_help=True,
    add_completion=False,
)

RegistryOpt = Annotated[
    Path | None,
    typer.Option("--registry", help="Registry root (default: $MODELSERVE_REGISTRY or models)."),
]


def _registry(path: Path | None) -> Registry:
    return Registry(path or Settings().registry)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def prepare_multiprocess_dir(workers: int) -> None:
    """Point prometheus_client at an empty per-run directory when several workers share it."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    elif workers > 1:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="modelserve-metrics-")


def _stopped_by_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


@cli.command()
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
    import uvicorn

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
    prepare_multiprocess_dir(settings.workers)
    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal; a stop asked
    # for by the orchestrator is a clean exit (0), not death by signal (-15).
    signal.signal(signal.SIGTERM, _stopped_by_sigterm)
    try:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",  # explicit: "auto" silently falls back to asyncio and h11 if absent
            http="app.protocol:HeaderDeadlineProtocol",  # httptools + a header-read deadline
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=math.ceil(settings.request_timeout_s),
        )
    finally:
        if multiproc_dir and multiproc_dir.startswith(tempfile.gettempdir() + "/modelserve-"):
            shutil.rmtree(multiproc_dir, ignore_errors=True)


@cli.command("models")
def list_models(registry: RegistryOpt = None) -> None:
    """List the models in the registry with their versions and aliases."""
    reg = _registry(registry)
    names = reg.model_names()
    if not names:
        raise _fail(f"no models in registry {reg.root}")
    for name in names:
        try:
            versions = ", ".join(reg.versions(name)) or "-"
            aliases = ", ".join(f"{a}={v}" for a, v in sorted(reg.aliases(name).items())) or "-"
        except (RegistryError, ValueError) as exc:
            typer.echo(f"{name}\tunreadable: {exc}")
            continue
        typer.echo(f"{name}\tversions: {versions}\taliases: {aliases}")


def _csv_value(raw: str | None) -> Any:
    """A CSV cell as a float, or as-is so parse_instances names the field it rejects."""
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return raw


def _read_rows(path: Path, feature_names: list[str]) -> np.ndarray[Any, Any]:
    from app.errors import ApiError
    from app.schemas import decode_json, parse_instances

    try:
        if path.suffix == ".csv":
            with path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                instances: Any = [
                    {k: _csv_value(v) for k, v in row.items() if k in feature_names}
                    for row in reader
                ]
            payload: Any = {"instances": instances}
        else:
            payload = decode_json(path.read_bytes())
            if isinstance(payload, list):
                payload = {"instances": payload}
        return parse_instances(payload, feature_names, max_batch=sys.maxsize)
    except ApiError as exc:
        raise _fail(f"{path}: {exc.field}: {exc.message}") from None


@cli.command()
def predict(
    name: Annotated[str, typer.Argument(help="Model name in the registry.")],
    input: Annotated[
        Path, typer.Option("--input", "-i", exists=True, dir_okay=False, help="rows.csv|rows.json")
    ],
    alias: Annotated[str, typer.Option(help="Alias or version number.")] = "production",
    registry: RegistryOpt = None,
) -> None:
    """Score a CSV (header = feature names) or JSON file locally; JSON lines to stdout."""
    reg = _registry(registry)
    try:
        version = reg.resolve(name, alias)
        artifact = reg.load(name, version)
    except RegistryError as exc:
        raise _fail(str(exc)) from None
    meta = artifact.metadata
    rows = _read_rows(input, meta.feature_names)
    predictions = artifact.estimator.predict(rows)
    has_proba = meta.task == "classification" and hasattr(artifact.estimator, "predict_proba")
    proba = artifact.estimator.predict_proba(rows) if has_proba else None
    for i, prediction in enumerate(np.asarray(predictions).tolist()):
        line: dict[str, Any] = {"model": name, "version": version, "prediction": prediction}
        if proba is not None:
            line["probabilities"] = proba[i].tolist()
        sys.stdout.write(orjson.dumps(line).decode() + "\n")


cli_lifecycle.register(cli)  # train, versions, promote, rollback, verify


@cli.command()
def simulate(
    url: Annotated[str, typer.Option(help="Server to drive.")] = "http://127.0.0.1:8000",
    rate: Annotated[float, typer.Option(min=0.1, help="Predictions per second.")] = 20.0,
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds of sending.")] = 30.0,
    drift: Annotated[float, typer.Option(help="Shift every feature by this many std.")] = 0.0,
    label_noise: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Chance a true label is flipped.")
    ] = 0.0,
    feedback_delay: Annotated[
        float, typer.Option(min=0.0, help="Seconds before the label is sent.")
    ] = 1.0,
    model: Annotated[
        str | None, typer.Option(help="Model name (default: the server's /predict model).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    allow_remote: Annotated[bool, typer.Option(help="Allow a non-loopback --url.")] = False,
) -> None:
    """Send predictions drawn from the training data, then their (delayed) true labels."""
    import asyncio

    from app.simulate import SimConfig, SimulationError, check_loopback
    from app.simulate import simulate as run_simulation

    config = SimConfig(
        url=url.rstrip("/"),
        rate=rate,
        duration=duration,
        drift=drift,
        label_noise=label_noise,
        feedback_delay=feedback_delay,
        model=model,
        seed=seed,
    )
    try:
        if not allow_remote:
            check_loopback(config.url)
        summary = asyncio.run(run_simulation(config))
    except SimulationError as exc:
        raise _fail(str(exc)) from None
    for line in summary.lines():
        typer.echo(line)
    if summary.predictions_ok == 0:
        raise _fail("no prediction succeeded")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
