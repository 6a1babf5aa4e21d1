"""Lifecycle commands of the ``modelserve`` CLI: train, versions, promote, rollback, verify.

Thin wrappers: the work is in ``app.training.train`` and ``app.registry.store``. Exit codes:
0 ok, 1 registry or spec error, 3 data validation failed, 4 gate failed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from app.config import Settings
from app.registry.store import Registry, RegistryError
from app.training.spec import SpecError, load_spec, parse_overrides

EXIT_VALIDATION = 3
EXIT_GATE = 4

RegistryOpt = Annotated[
    Path | None,
    typer.Option("--registry", help="Registry root (default: $MODELSERVE_REGISTRY or models)."),
]
AliasOpt = Annotated[str, typer.Option("--alias", help="Alias to move.")]


def _registry(path: Path | None) -> Registry:
    return Registry(path or Settings().registry)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def train(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Training spec (YAML/TOML).")],
    registry: RegistryOpt = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the JSON report here.")
    ] = None,
    summary: Annotated[
        Path | None,
        typer.Option("--summary", help="Append a markdown summary (e.g. $GITHUB_STEP_SUMMARY)."),
    ] = None,
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
            spec, _registry(registry), promote_if_better=promote_if_better, tolerance=tolerance
        )
    except (SpecError, RegistryError) as exc:
        raise _fail(str(exc)) from None
    doc = outcome.report
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    lines = [f"## modelserve train {spec.name}: {outcome.status}", ""]
    if outcome.status == "validation_failed":
        lines += ["Data validation failed:", "", _validation_table(doc)]
    else:
        if outcome.comparison is not None:
            lines += [outcome.comparison.table(), ""]
        lines += [f"- gate `{g['rule']}`: {'pass' if g['ok'] else 'FAIL'}" for g in doc["gate"]]
        if outcome.version is not None:
            promoted = "promoted to production" if outcome.promoted else "not promoted"
            lines.append(f"- registered {spec.name} version {outcome.version}, {promoted}")
    text = "\n".join(lines) + "\n"
    typer.echo(text)
    if summary is not None:
        with summary.open("a") as fh:
            fh.write(text + "\n")
    if outcome.status == "validation_failed":
        raise _fail(
            "data validation failed (see the table above); nothing registered", EXIT_VALIDATION
        )
    if outcome.status == "gate_failed":
        failed = ", ".join(f"{g['rule']} (got {g['value']})" for g in doc["gate"] if not g["ok"])
        raise _fail(f"gate failed: {failed}; nothing registered", EXIT_GATE)


def _validation_table(doc: dict[str, object]) -> str:
    from app.training.validate import Failure, ValidationReport

    raw = doc["validation"]
    assert isinstance(raw, dict)
    failures = [Failure(**f) for f in raw["failures"]]
    return ValidationReport(failures).table()


def versions(name: str, registry: RegistryOpt = None) -> None:
    """List a model's versions with created time, key metrics and aliases."""
    reg = _registry(registry)
    try:
        found = reg.versions(name)
        aliases = reg.aliases(name)
        by_version: dict[str, list[str]] = {}
        for alias, version in sorted(aliases.items()):
            by_version.setdefault(version, []).append(alias)
        for version in found:
            meta = reg.metadata(name, version)
            shown = ", ".join(f"{k}={v:.4f}" for k, v in list(meta.metrics.items())[:3])
            tags = ",".join(by_version.get(version, [])) or "-"
            created = meta.created_at.isoformat(timespec="seconds")
            typer.echo(f"{version}\t{tags}\t{created}\t{meta.sha256[:12]}\t{shown}")
    except (RegistryError, ValueError) as exc:
        raise _fail(str(exc)) from None


def promote(
    name: str, version: str, alias: AliasOpt = "production", registry: RegistryOpt = None
) -> None:
    """Point an alias (default production) at a version, after verifying its checksum."""
    reg = _registry(registry)
    try:
        resolved = reg.resolve(name, version)
        before = reg.aliases(name).get(alias)
        reg.set_alias(name, alias, resolved, reason="promote")
    except (RegistryError, ValueError) as exc:
        raise _fail(f"not promoted: {exc}") from None
    typer.echo(f"{name}: {alias} {before or '-'} -> {resolved}")


def rollback(name: str, alias: AliasOpt = "production", registry: RegistryOpt = None) -> None:
    """Point an alias back at the version it had before the current one."""
    try:
        before, after = _registry(registry).rollback(name, alias)
    except (RegistryError, ValueError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{name}: {alias} {before} -> {after} (rollback)")


def verify(
    name: Annotated[str | None, typer.Argument(help="One model (default: all).")] = None,
    registry: RegistryOpt = None,
) -> None:
    """Check every version's sha256 and every alias target; non-zero on any failure."""
    reg = _registry(registry)
    results = reg.verify_all([name] if name else None)
    if not results:
        raise _fail(f"nothing to verify in {reg.root}")
    bad = 0
    for model, version, error in results:
        typer.echo(f"{model}\t{version}\t{'ok' if error is None else 'FAILED: ' + error}")
        bad += error is not None
    if bad:
        raise _fail(f"{bad} of {len(results)} checks failed")


def register(cli: typer.Typer) -> None:
    cli.command()(train)
    cli.command()(versions)
    cli.command()(promote)
    cli.command()(rollback)
    cli.command()(verify)
