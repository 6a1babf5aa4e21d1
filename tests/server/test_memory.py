"""glibc's arenas capped once per worker, unless the operator chose (issue #26, point 4)."""

from __future__ import annotations

import platform

import pytest

from app.server import memory


def test_glibc_gets_its_arenas_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert memory.tune_malloc() is True


@pytest.mark.parametrize(
    ("name", "value"),
    [("MALLOC_ARENA_MAX", "4"), ("GLIBC_TUNABLES", "glibc.malloc.arena_max=8")],
)
def test_an_operator_s_own_setting_is_kept(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    assert memory.tune_malloc() is False


def test_another_c_library_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", "1.2"))
    assert memory.tune_malloc() is False
