"""Registry commands: ``models``, ``versions``, ``promote``, ``rollback``, ``shadow``, ``verify``.

Thin wrappers over ``app.registry.store``; a registry error is one ``error:`` line and exit 1,
never a traceback.
"""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import RegistryOpt, fail, open_registry
from app.registry.audit import verify_all
from app.registry.roles import PRODUCTION, RoleAliases
from app.registry.store import RegistryError

AliasOpt = Annotated[str, typer.Option("--alias", help="Alias to move.")]
CanaryOpt = Annotated[
    float | None,
    typer.Option(
        "--canary",
        help="Send this percent of production's requests to VERSION instead of promoting it.",
        show_default=False,
    ),
]


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
    name: str,
    version: str,
    alias: AliasOpt = PRODUCTION,
    canary: CanaryOpt = None,
    registry: RegistryOpt = None,
) -> None:
    """Point an alias (default production) at a version that passes its checksum and loads.

    The version is loaded and scores its stored example in a fresh process of this
    environment first (run it where the servers' code and libraries are); one that cannot
    is refused with the reason, and no alias moves. The same holds for --canary, shadow,
    rollback, rollout and register --promote.

    With --canary PERCENT, VERSION answers that share of production's requests instead;
    promoting without the flag finishes a canary, `rollback` ends it.
    """
    reg = open_registry(registry)
    roles = RoleAliases(reg)
    try:
        if canary is not None:
            if alias != PRODUCTION:
                raise ValueError("--canary splits the production alias; drop --alias")
            state = roles.start_canary(name, version, canary, reason="canary")
            typer.echo(
                f"{name}: canary {state.canary} takes {state.canary_percent:g}% of production "
                f"{state.production}'s requests"
            )
            return
        resolved = reg.resolve(name, version)
        if alias == PRODUCTION:
            before = roles.promote(name, resolved)
        else:
            before = reg.aliases(name).get(alias)
            reg.set_alias(name, alias, resolved, reason="promote")
    except (RegistryError, ValueError) as exc:
        raise fail(f"not promoted: {exc}") from None
    typer.echo(f"{name}: {alias} {before or '-'} -> {resolved}")


def rollback(name: str, alias: AliasOpt = PRODUCTION, registry: RegistryOpt = None) -> None:
    """End a running canary; without one, point the alias back at its previous version."""
    reg = open_registry(registry)
    try:
        if alias == PRODUCTION:
            ended = RoleAliases(reg).end_canary(name, reason="rollback")
            if ended is not None:
                production = reg.aliases(name).get(PRODUCTION, "-")
                typer.echo(
                    f"{name}: canary {ended} ended (rollback); production stays {production}"
                )
                return
        before, after = reg.rollback(name, alias)
    except (RegistryError, ValueError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"{name}: {alias} {before} -> {after} (rollback)")


def shadow(
    name: str,
    version: Annotated[str | None, typer.Argument(help="Version to shadow production.")] = None,
    off: Annotated[bool, typer.Option("--off", help="Stop shadowing.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """Score every production row with VERSION too, off the request path; --off stops it."""
    if (version is None) == (not off):
        raise fail("give a VERSION to shadow, or --off")
    try:
        before = RoleAliases(open_registry(registry)).set_shadow(name, None if off else version)
    except (RegistryError, ValueError) as exc:
        raise fail(f"shadow not changed: {exc}") from None
    if off:
        typer.echo(f"{name}: shadow {before or '-'} stopped")
    else:
        typer.echo(f"{name}: shadow {before or '-'} -> {version} (scores production's rows)")


def verify(
    name: Annotated[str | None, typer.Argument(help="One model (default: all).")] = None,
    registry: RegistryOpt = None,
) -> None:
    """Check every version's sha256 and every alias target; non-zero on any failure."""
    reg = open_registry(registry)
    results = verify_all(reg, [name] if name else None)
    if not results:
        raise fail(f"nothing to verify in {reg.root}")
    bad = 0
    for model, version, error in results:
        typer.echo(f"{model}\t{version}\t{'ok' if error is None else 'FAILED: ' + error}")
        bad += error is not None
    if bad:
        raise fail(f"{bad} of {len(results)} checks failed")
