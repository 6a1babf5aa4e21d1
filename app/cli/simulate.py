"""``modelserve simulate``: demo traffic with delayed true labels (``app.tools.simulate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import fail


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
    data: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="CSV of training rows (any feature types)."),
    ] = None,
    target: Annotated[str | None, typer.Option(help="The label column of --data.")] = None,
    shift: Annotated[
        list[str] | None,
        typer.Option(help="FEATURE=VALUE:SHARE: that share of rows get VALUE (repeatable)."),
    ] = None,
    allow_remote: Annotated[bool, typer.Option(help="Allow a non-loopback --url.")] = False,
    progress_every: Annotated[
        float,
        typer.Option(min=0.0, help="Seconds between progress lines on stderr (0: none)."),
    ] = 10.0,
) -> None:
    """Send predictions drawn from the training data, then their (delayed) true labels."""
    import asyncio

    from app.tools.simulate import Shift, SimConfig, SimulationError, check_loopback
    from app.tools.simulate import simulate as run_simulation

    try:
        shifts = tuple(Shift.parse(s) for s in shift or [])
    except SimulationError as exc:
        raise fail(str(exc)) from None
    config = SimConfig(
        url=url.rstrip("/"),
        rate=rate,
        duration=duration,
        drift=drift,
        label_noise=label_noise,
        feedback_delay=feedback_delay,
        model=model,
        seed=seed,
        data=data,
        target=target,
        shifts=shifts,
        progress_every_s=progress_every,
    )
    try:
        if not allow_remote:
            check_loopback(config.url)
        summary = asyncio.run(run_simulation(config, lambda line: typer.echo(line, err=True)))
    except SimulationError as exc:
        raise fail(str(exc)) from None
    for line in summary.lines():
        typer.echo(line)
    if summary.predictions_ok == 0:
        raise fail("no prediction succeeded")
