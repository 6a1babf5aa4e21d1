"""``modelserve register``: register a model trained elsewhere (joblib, skops, MLflow).

The work is in ``app.training.register``; this module prints its outcome and turns the status
into the exit codes of ``modelserve train``: 0 registered, 1 refused (artifact, sample, option
or registry error; nothing written), 3 the sample failed its checks, 4 the gate failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli.common import RegistryOpt, ReportOpt, SummaryOpt, fail, open_registry, publish
from app.cli.train import EXIT_GATE, EXIT_VALIDATION
from app.registry.store import RegistryError

if TYPE_CHECKING:
    from app.training.register import RegisterOutcome


def register(
    name: Annotated[str, typer.Argument(help="Registry model name.")],
    artifact: Annotated[
        Path,
        typer.Argument(help="A .joblib/.pkl/.pickle or .skops file, or an MLflow model dir."),
    ],
    sample: Annotated[
        Path | None,
        typer.Option(help="CSV or Parquet rows: schema, smoke test, metrics, drift reference."),
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="The sample's label column (metrics and the gate).")
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(help="classification or regression (default: from the estimator)."),
    ] = None,
    format_: Annotated[
        str | None,
        typer.Option("--format", help="Stored format, joblib or skops (default: the input's)."),
    ] = None,
    gate: Annotated[
        list[str] | None,
        typer.Option(help="METRIC>=X or METRIC<=X, repeatable; replaces the default gate."),
    ] = None,
    promote: Annotated[
        bool, typer.Option("--promote", help="Point production at the new version.")
    ] = False,
    registry: RegistryOpt = None,
    report: ReportOpt = None,
    summary: SummaryOpt = None,
) -> None:
    """Register an artifact trained elsewhere: infer its schema, check, gate, store its bytes.

    Unpickling runs code: register your own artifacts (as joblib.load in your notebook would).
    """
    from app.training.register import RegisterError, Request, run

    request = Request(name, artifact, sample, target, task, format_, tuple(gate or ()), promote)
    try:
        outcome = run(request, open_registry(registry))
    except (RegisterError, RegistryError) as exc:
        raise fail(str(exc)) from None
    for note in outcome.notes:
        typer.secho(f"note: {note}", err=True, fg=typer.colors.YELLOW)
    publish(_summary(name, outcome), outcome.report, report, summary)
    failed = ", ".join(f"{g.rule} (got {g.value})" for g in outcome.gates if not g.ok)
    refusals = {
        "validation_failed": ("the sample failed its checks (table above)", EXIT_VALIDATION),
        "gate_failed": (f"gate failed: {failed}", EXIT_GATE),
    }
    if outcome.status in refusals:
        message, code = refusals[outcome.status]
        raise fail(f"{message}; nothing registered", code)


def _summary(name: str, outcome: RegisterOutcome) -> str:
    """The markdown printed and appended to ``--summary``: source, checks, table, result."""
    source = outcome.report["source"]
    lines = [
        f"## modelserve register {name}: {outcome.status}",
        "",
        f"- source: {source['kind']} `{source['path']}` (sha256 {source['sha256'][:12]}), "
        f"stored as {outcome.report['format']}; {len(outcome.features)} features, input "
        f"format {outcome.report['input_format']}",
    ]
    if not outcome.validation.ok:
        lines += ["", "Sample checks failed:", "", outcome.validation.table()]
    if outcome.comparison is not None:
        lines += ["", outcome.comparison.table(), ""]
    lines += [f"- gate `{g.rule}`: {'pass' if g.ok else 'FAIL'}" for g in outcome.gates]
    if outcome.version is not None:
        promoted = "promoted to production" if outcome.promoted else "not promoted"
        lines.append(f"- registered {name} version {outcome.version}, {promoted}")
    return "\n".join(lines) + "\n"
