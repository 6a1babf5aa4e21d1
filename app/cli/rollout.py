"""``modelserve rollout``: a canary stepped up, or rolled back, by Prometheus (app.tools)."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import RegistryOpt, fail, open_registry
from app.registry.roles import RoleAliases
from app.registry.store import RegistryError
from app.tools.rollout import (
    Limits,
    Plan,
    Prometheus,
    RolloutError,
    parse_duration,
    parse_steps,
    queries,
    run,
)


def rollout(
    name: str,
    version: str,
    prometheus: Annotated[str, typer.Option(help="Prometheus base URL (its HTTP API).")],
    steps: Annotated[str, typer.Option(help="Canary weights in percent.")] = "5,25,50,100",
    interval: Annotated[str, typer.Option(help="Time at each step (30s, 5m, 1h).")] = "5m",
    max_error_ratio: Annotated[
        float, typer.Option(help="Most failed requests per request for the canary.")
    ] = 0.01,
    max_p99_ratio: Annotated[
        float, typer.Option(help="Most canary p99 model latency over production's.")
    ] = 1.5,
    min_accuracy_delta: Annotated[
        float, typer.Option(help="Least online accuracy minus production's, once labelled.")
    ] = -0.02,
    latency_slack_ms: Annotated[
        float, typer.Option(help="A canary p99 slower by less than this passes whatever the ratio.")
    ] = 5.0,
    min_agreement: Annotated[
        float | None, typer.Option(help="Least share of rows where canary and production agree.")
    ] = None,
    min_labels: Annotated[
        int, typer.Option(help="Labels per version (1 h) before accuracy is judged.")
    ] = 50,
    min_requests: Annotated[
        int, typer.Option(help="Canary requests (5 min) before errors and latency are judged.")
    ] = 100,
    dry_run: Annotated[
        bool, typer.Option(help="Print the plan and queries; change nothing.")
    ] = False,
    registry: RegistryOpt = None,
) -> None:
    """Step a canary up, checking it against production in Prometheus; roll back on a failure.

    Exit 0 when the last step is reached (100 promotes), 1 after a rollback or an error.
    """
    try:
        limits = Limits(
            max_error_ratio,
            max_p99_ratio,
            min_accuracy_delta,
            min_agreement,
            min_labels,
            min_requests,
            latency_slack_ms / 1000,
        )
        plan = Plan(name, version, parse_steps(steps), parse_duration(interval), limits)
    except ValueError as exc:
        raise fail(str(exc)) from None
    check_every = min(plan.check_every_s, max(plan.interval_s / 4, 1.0))
    plan = Plan(name, version, plan.steps, plan.interval_s, limits, check_every)
    roles = RoleAliases(open_registry(registry))
    if dry_run:
        _print_plan(plan, roles)
        return
    try:
        code = run(plan, roles, Prometheus(prometheus), echo=typer.echo)
    except (RegistryError, RolloutError, ValueError) as exc:
        ended = _abort(roles, name, version)
        raise fail(f"rollout stopped: {exc}{ended}") from None
    if code:
        raise typer.Exit(code)


def _print_plan(plan: Plan, roles: RoleAliases) -> None:
    try:
        production = roles.read(plan.model).production or "-"
    except (RegistryError, ValueError) as exc:
        raise fail(str(exc)) from None
    typer.echo(
        f"dry run: {plan.model} {plan.version} against production {production}, steps "
        f"{', '.join(f'{s:g}%' for s in plan.steps)}, {plan.interval_s:g} s each"
    )
    typer.echo(f"limits: {plan.limits}")
    for who, version in (("canary", plan.version), ("production", production)):
        for check, query in queries(plan.model, version).items():
            typer.echo(f"  {who} {check}: {query}")


def _abort(roles: RoleAliases, name: str, version: str) -> str:
    """End a canary this rollout started when it cannot go on (it must not stay unwatched)."""
    try:
        if roles.read(name).canary == version:
            roles.end_canary(name, reason="rollout-failed: error")
            return "; canary ended"
    except (RegistryError, ValueError):
        pass
    return ""
