"""The ``modelserve`` command line: serve, inspect the registry, train, score files locally.

Each command lives in the module of its group; this module only lists them, in the order
``modelserve --help`` shows them, so adding a command is one visible line here.
"""

from __future__ import annotations

import typer

from app.cli import export, predict, register, registry, rollout, serve, simulate, train

cli = typer.Typer(
    name="modelserve",
    help="Serve versioned scikit-learn models over HTTP, watched by Prometheus.",
    no_args_is_help=True,
    add_completion=False,
)
cli.command()(serve.serve)
cli.command("models")(registry.list_models)
cli.command()(predict.predict)
cli.command()(train.train)
cli.command()(register.register)
cli.command()(registry.versions)
cli.command()(registry.promote)
cli.command()(registry.rollback)
cli.command()(registry.shadow)
cli.command()(rollout.rollout)
cli.command()(registry.verify)
cli.command()(simulate.simulate)
cli.command()(export.export)


def main() -> None:
    cli()
