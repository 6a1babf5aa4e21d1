"""MODELSERVE_* environment variables configure the server; CLI flags beat them."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from app.config import Settings
from tests.helpers.support import ROOT, Server, free_port


def test_env_vars_configure_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELSERVE_REGISTRY", str(tmp_path / "reg"))
    monkeypatch.setenv("MODELSERVE_PORT", "9123")
    monkeypatch.setenv("MODELSERVE_MODEL", "iris")
    monkeypatch.setenv("MODELSERVE_ALIAS", "staging")
    monkeypatch.setenv("MODELSERVE_MAX_BATCH", "7")
    monkeypatch.setenv("MODELSERVE_LOG_FORMAT", "json")

    settings = Settings()

    assert settings.registry == (tmp_path / "reg").resolve()
    assert (settings.port, settings.default_model, settings.alias) == (9123, "iris", "staging")
    assert (settings.max_batch, settings.log_format) == (7, "json")
    assert settings.host == "127.0.0.1"  # unset: the documented default


def test_defaults_match_the_readme(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REGISTRY", "HOST", "PORT", "MODEL", "ALIAS", "MAX_BATCH", "LOG_FORMAT"):
        monkeypatch.delenv(f"MODELSERVE_{name}", raising=False)
    settings = Settings()
    assert settings.registry == Path("models").resolve()
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert (settings.default_model, settings.alias) == ("breast-cancer", "production")
    assert (settings.max_batch, settings.log_format) == (1000, "text")


@pytest.mark.parametrize(
    ("name", "value"), [("LOG_FORMAT", "xml"), ("PORT", "http"), ("MAX_BATCH", "0")]
)
def test_invalid_env_is_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(f"MODELSERVE_{name}", value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()


@pytest.mark.e2e
def test_port_flag_beats_env(registry_path: Path, server_factory: Callable[..., Server]) -> None:
    flag_port = free_port()
    server = server_factory(registry_path, args=("--port", str(flag_port)))
    env_url = server.url  # the factory put this port in MODELSERVE_PORT
    server.url = f"http://127.0.0.1:{flag_port}"

    server.wait_ready(timeout=60)
    with pytest.raises(httpx.TransportError):
        httpx.get(env_url + "/health/live", timeout=2)


def test_every_setting_is_documented_in_the_configuration_reference() -> None:
    """A new MODELSERVE_* variable without a documented entry is a setting nobody can find."""
    readme = (ROOT / "docs" / "reference" / "configuration.md").read_text()
    variables = [  # a field renamed in code keeps its variable through validation_alias
        alias if isinstance(alias := info.validation_alias, str) else f"MODELSERVE_{field.upper()}"
        for field, info in Settings.model_fields.items()
    ]
    missing = [name for name in variables if not re.search(rf"`{name}`", readme)]
    assert missing == []
