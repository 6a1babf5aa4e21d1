"""Which model /predict serves, and the start-up error when the registry cannot serve it."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings
from app.registry.store import Registry
from app.serving.default_model import StartupError, choose_default_model
from tests.helpers.support import run_cli
from tests.helpers.v2_models import register_iris


def _registry(tmp_path: Path, *names: str) -> Path:
    root = tmp_path / "reg"
    for name in names:
        register_iris(root, name, [0, 1, 2, 3])
    return root


def test_a_registry_with_one_model_serves_it_without_settings(tmp_path: Path) -> None:
    root = _registry(tmp_path, "iris")
    assert choose_default_model(Settings(registry=root), Registry(root)) == "iris"


def test_the_configured_model_wins(tmp_path: Path) -> None:
    root = _registry(tmp_path, "iris", "flowers")
    settings = Settings(registry=root, default_model="flowers")
    assert choose_default_model(settings, Registry(root)) == "flowers"


@pytest.mark.e2e  # modelserve serve as a process
@pytest.mark.parametrize(
    ("names", "model", "says"),
    [
        ((), None, "no models in the registry"),
        (("iris", "flowers"), None, "set MODELSERVE_MODEL (or --model) to one of: flowers, iris"),
        (("iris",), "nope", "default model 'nope' is not in the registry"),
    ],
)
def test_a_default_model_the_registry_lacks_stops_start_up(
    tmp_path: Path, names: tuple[str, ...], model: str | None, says: str
) -> None:
    root = _registry(tmp_path, *names)
    root.mkdir(exist_ok=True)
    settings = (
        Settings(registry=root) if model is None else Settings(registry=root, default_model=model)
    )
    with pytest.raises(StartupError, match=says.replace("(", r"\(").replace(")", r"\)")):
        choose_default_model(settings, Registry(root))
    env = {"MODELSERVE_PORT": "0"} | ({} if model is None else {"MODELSERVE_MODEL": model})
    done = run_cli("serve", "--registry", str(root), env=env)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: ") and says in done.stderr
    assert "Traceback" not in done.stderr
