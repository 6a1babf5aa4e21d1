"""``modelserve predict``: score a CSV or JSON file locally, through the same inference entry
as the server (input contract, batcher, one-pass scorers), one JSON line per row."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from app.cli.common import RegistryOpt, fail, open_registry
from app.errors import RequestError
from app.registry.metadata import FeatureSpec
from app.registry.store import Registry, RegistryError

if TYPE_CHECKING:
    from app.results import InferenceResult

NO_TIMEOUT_S = 24 * 3600.0  # a local file is scored whatever its size


def _read_payload(path: Path, features: list[FeatureSpec]) -> Any:
    from app.api.codecs.body import decode_json

    if path.suffix == ".csv":
        from app.api.codecs.csv_rows import csv_records

        names = {f.name for f in features}
        records = csv_records(path.read_text(), features, str(path))
        # A training table's other columns (the target, ids) are left out here.
        rows = [{k: v for k, v in record.items() if k in names} for record in records]
        return {"instances": rows}
    payload = decode_json(path.read_bytes())
    return {"instances": payload} if isinstance(payload, list) else payload


async def _score(registry: Registry, name: str, version: str, path: Path) -> InferenceResult:
    # Imported here: the other commands should not pay for the serving stack at start-up.
    from app.api.codecs.v1 import decode_instances
    from app.config import Settings
    from app.serving.manager import ModelManager
    from app.serving.scoring import Inference

    settings = Settings(
        registry=registry.root, default_model=name, poll_interval_s=0, prediction_log_enabled=False
    )
    models = ModelManager(registry, settings)
    inference = Inference(models, sink=None, timeout_s=NO_TIMEOUT_S)

    try:
        route = await inference.route(name, version)
        with inference.decoding(route):
            payload = _read_payload(path, route.serves.metadata.features)
            rows = decode_instances(payload, route.serves.contract, max_batch=sys.maxsize)
        return await inference.predict(route, rows)
    finally:
        await models.stop()


def predict(
    name: Annotated[str, typer.Argument(help="Model name in the registry.")],
    input: Annotated[
        Path, typer.Option("--input", "-i", exists=True, dir_okay=False, help="rows.csv|rows.json")
    ],
    alias: Annotated[str, typer.Option(help="Alias or version number.")] = "production",
    registry: RegistryOpt = None,
) -> None:
    """Score a CSV (header = feature names) or JSON file locally; JSON lines to stdout."""
    reg = open_registry(registry)
    try:
        version = reg.resolve(name, alias)
        result = asyncio.run(_score(reg, name, version, input))
    except RegistryError as exc:
        raise fail(str(exc)) from None
    except RequestError as exc:
        where = f"{exc.field}: " if exc.field else ""
        raise fail(f"{input}: {where}{exc.message}") from None
    probabilities = None if result.probabilities is None else result.probabilities.tolist()
    for i, prediction in enumerate(result.predictions.tolist()):
        line: dict[str, Any] = {"model": name, "version": version, "prediction": prediction}
        if probabilities is not None:
            line["probabilities"] = probabilities[i]
        sys.stdout.write(orjson.dumps(line).decode() + "\n")
