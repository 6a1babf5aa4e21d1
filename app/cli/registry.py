"""Registry commands: ``models``, ``versions``, ``promote``, ``rollback``, ``verify``.

Thin wrappers over ``app.registry.store``; a registry error is one ``error:`` line and exit 1,
never a traceback.
"""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import RegistryOpt, fail, open_registry
from app.registry.store import RegistryError

AliasOpt = Annotated[str, typer.Option("--alias", help="Alias to move.")]


def list_models(registry: RegistryOpt = None) -> None:
    """List the models in the registry with their versions and aliases."""
    reg = open_registry(registry)
    names = reg.model_names()
    if not names:
        raise fail(f"no models in registry {reg.root}")
    for name in names:
        try:
            versions = ", ".join(reg.versions(name)) or "-"
            aliases = ", ".join(f"{a}={v}" for a, v in sorted(reg.aliases(name).items())) or "-"
        except (RegistryError, ValueError) as exc:
            typer.echo(f"{name}\tunreadable: {exc}")
            continue
        typer.echo(f"{name}\tversions: {versions}\taliases: {aliases}")


def versions(name: str, registry: RegistryOpt = None) -> None:
    """List a model's versions with created time, key metrics and aliases."""
    reg = open_registry(registry)
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
        raise fail(str(exc)) from None


def promote(
    name: str, version: str, alias: AliasOpt = "production", registry: RegistryOpt = None
) -> None:
    """Point an alias (default production) at a version, after verifying its checksum."""
    reg = open_registry(registry)
    try:
        resolved = reg.resolve(name, version)
        before = reg.aliases(name).get(alias)
        reg.set_alias(name, alias, resolved, reason="promote")
    except (RegistryError, ValueError) as exc:
        raise fail(f"not promoted: {exc}") from None
    typer.echo(f"{name}: {alias} {before or '-'} -> {resolved}")


def rollback(name: str, alias: AliasOpt = "production", registry: RegistryOpt = None) -> None:
    """Point an alias back at the version it had before the current one."""
    try:
        before, after = open_registry(registry).rollback(name, alias)
    except (RegistryError, ValueError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"{name}: {alias} {before} -> {after} (rollback)")


def verify(
    name: Annotated[str | None, typer.Argument(help="One model (default: all).")] = None,
    registry: RegistryOpt = None,
) -> None:
    """Check every version's sha256 and every alias target; non-zero on any failure."""
    reg = open_registry(registry)
    results = reg.verify_all([name] if name else None)
    if not results:
        raise fail(f"nothing to verify in {reg.root}")
    bad = 0
    for model, version, error in results:
        typer.echo(f"{model}\t{version}\t{'ok' if error is None else 'FAILED: ' + error}")
        bad += error is not None
    if bad:
        raise fail(f"{bad} of {len(results)} checks failed")
