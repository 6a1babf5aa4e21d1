"""Rollback targets come from alias history read as a stack, without a registry on disk."""

from __future__ import annotations

from app.registry.aliases import alias_stack, rollback_target


def _moves(*moves: tuple[str, str]) -> list[dict[str, str]]:
    return [{"alias": "production", "version": v, "reason": r} for v, r in moves]


def test_rollbacks_walk_back_instead_of_flipping() -> None:
    history = _moves(("1", "promote"), ("2", "promote"), ("3", "promote"), ("2", "rollback"))
    assert alias_stack(history, "production") == ["1", "2"]
    assert rollback_target(history, "production") == "1"
    assert rollback_target([*history, *_moves(("1", "rollback"))], "production") is None


def test_other_aliases_and_repeats_do_not_count() -> None:
    history = [
        *_moves(("1", "promote"), ("1", "promote")),
        {"alias": "staging", "version": "5", "reason": "promote"},
    ]
    assert alias_stack(history, "production") == ["1"]
    assert rollback_target(history, "production") is None
    assert rollback_target([], "production") is None
