"""``modelserve train``: validate data, fit, gate, compare with production, register.

The work is in ``app.training.train``; this module prints its outcome and turns the status
into an exit code: 0 registered, 1 spec or registry error, 3 data validation failed, 4 gate
failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli.common import RegistryOpt, ReportOpt, SummaryOpt, fail, open_registry, publish
from app.registry.store import RegistryError
from app.training.spec import SpecError, load_spec, parse_overrides

if TYPE_CHECKING:
    from app.training.train import Outcome

EXIT_VALIDATION = 3
EXIT_GATE = 4


def train(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Training spec (YAML/TOML).")],
    registry: RegistryOpt = None,
    report: ReportOpt = None,
    summary: SummaryOpt = None,
    promote_if_better: Annotated[
        bool,
        typer.Option(help="Promote to production unless worse than it by more than tolerance."),
    ] = False,
    tolerance: Annotated[
        float | None, typer.Option(min=0, help="Override gate.tolerance of the spec.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a spec field: --set estimator.params.C=0.5"),
    ] = None,
    format_: Annotated[
        str | None,
        typer.Option("--format", help="Artifact format, joblib or skops (default: the spec's)."),
    ] = None,
) -> None:
    """Validate data, train, gate, compare with production and register a new version."""
    from app.training.train import run

    try:
        overrides = parse_overrides(set_ or [])
        if format_ is not None:
            overrides["format"] = format_  # validated with the spec: a typo names the field
        spec = load_spec(spec_path, overrides)
        outcome = run(
            spec, open_registry(registry), promote_if_better=promote_if_better, tolerance=tolerance
        )
    except (SpecError, RegistryError) as exc:
        raise fail(str(exc)) from None
    publish(_summary(spec.name, outcome), outcome.report, report, summary)
    if outcome.status == "validation_failed":
        raise fail(
            "data validation failed (see the table above); nothing registered", EXIT_VALIDATION
        )
    if outcome.status == "gate_failed":
        failed = ", ".join(f"{g.rule} (got {g.value})" for g in outcome.gates if not g.ok)
        raise fail(f"gate failed: {failed}; nothing registered", EXIT_GATE)


def _summary(name: str, outcome: Outcome) -> str:
    """The markdown printed and appended to ``--summary`` (a CI job summary)."""
    lines = [f"## modelserve train {name}: {outcome.status}", ""]
    if outcome.status == "validation_failed":
        lines += ["Data validation failed:", "", outcome.validation.table()]
    else:
        if outcome.comparison is not None:
            compared_on = outcome.report.get("comparison", {}).get("compared_on", "held-out rows")
            lines += [f"Compared with production on {compared_on}:", ""]
            lines += [outcome.comparison.table(), ""]
        lines += [f"- gate `{g.rule}`: {'pass' if g.ok else 'FAIL'}" for g in outcome.gates]
        calibration = outcome.report.get("calibration")
        if calibration and calibration.get("ece_calibrated") is not None:
            lines.append(
                f"- calibration error {calibration['ece']:.4f} on held-out rows, "
                f"{calibration['ece_calibrated']:.4f} with the isotonic map stored in metadata"
            )
        elif calibration:
            lines.append(f"- calibration error {calibration['ece']:.4f} on held-out rows")
        if outcome.version is not None:
            promoted = "promoted to production" if outcome.promoted else "not promoted"
            lines.append(f"- registered {name} version {outcome.version}, {promoted}")
    return "\n".join(lines) + "\n"
