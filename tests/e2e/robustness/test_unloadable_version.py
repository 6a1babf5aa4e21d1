"""A version whose checksum is right but which cannot be loaded (its pickle needs a module the
server does not have): no CLI moves an alias to it, and a server that meets it anyway (an alias
written elsewhere, a promote from a machine that has the module) keeps answering with the newest
earlier version of the alias history, says so in its log and in ``modelserve_model_fallback``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.registry.roles import RoleAliases
from app.registry.store import Registry
from tests.helpers.promtext import total
from tests.helpers.support import Server, run_cli
from tests.helpers.unloadable import MISSING_MODULE, register_unloadable

pytestmark = [pytest.mark.e2e]
NAME = "breast-cancer"
FALLBACK = "modelserve_model_fallback"


def _aliases(root: Path) -> bytes:
    return (root / NAME / "aliases.json").read_bytes()


def _good_version(root: Path) -> str:
    """A second loadable version: the first one's bytes registered again."""
    registry = Registry(root)
    source = registry.metadata(NAME, "1")
    data = (root / NAME / "1" / source.artifact).read_bytes()
    keep = source.model_dump(exclude={"name", "version", "artifact", "format", "sha256"})
    return registry.register_bytes(NAME, data, source.format, keep).version


def _exact(server: Server, root: Path, version: str) -> None:
    """POST /predict answers with ``version``, and exactly what that version returns."""
    loaded = Registry(root).load(NAME, version)
    rows = [loaded.metadata.example] * 3
    answer = httpx.post(server.url + "/predict", json={"instances": rows}, timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["version"] == version, body
    assert body["predictions"] == loaded.estimator.predict(np.array(rows)).tolist()


def test_no_cli_command_moves_an_alias_to_a_version_that_cannot_load(
    registry_path: Path,
) -> None:
    broken = register_unloadable(registry_path, NAME)
    before = _aliases(registry_path)
    for command in (
        ("promote", NAME, broken),
        ("promote", NAME, broken, "--alias", "staging"),
        ("promote", NAME, broken, "--canary", "10"),
        ("shadow", NAME, broken),
        (
            "rollout",
            NAME,
            broken,
            "--steps",
            "10",
            "--interval",
            "1s",
            "--prometheus",
            "http://127.0.0.1:9",
        ),
    ):
        done = run_cli(*command, "--registry", str(registry_path))
        assert done.returncode != 0, (command, done.stdout, done.stderr)
        assert f"No module named '{MISSING_MODULE}'" in done.stderr, (command, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        assert _aliases(registry_path) == before, command

    # A rollback to it is refused as well (production moved there without the CLI).
    good = _good_version(registry_path)
    Registry(registry_path).set_alias(NAME, "production", broken)
    Registry(registry_path).set_alias(NAME, "production", good)
    before = _aliases(registry_path)
    done = run_cli("rollback", NAME, "--registry", str(registry_path))
    assert done.returncode != 0 and MISSING_MODULE in done.stderr, done.stderr
    assert _aliases(registry_path) == before

    # Loadable versions still move.
    done = run_cli("promote", NAME, "1", "--registry", str(registry_path))
    assert done.returncode == 0, done.stderr
    assert Registry(registry_path).aliases(NAME)["production"] == "1"


def test_a_server_started_on_a_version_that_cannot_load_serves_the_one_before(
    registry_path: Path, server_factory: Callable[..., Server]
) -> None:
    good = _good_version(registry_path)
    broken = register_unloadable(registry_path, NAME)
    registry = Registry(registry_path)  # no load check: as an alias written elsewhere
    registry.set_alias(NAME, "production", good)
    registry.set_alias(NAME, "production", broken)

    server = server_factory(registry_path, env={"MODELSERVE_POLL_INTERVAL_S": "0.5"})
    ready = server.wait_ready()
    assert ready.json()["models"][NAME]["version"] == good
    _exact(server, registry_path, good)
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    assert total(metrics, FALLBACK, {"model": NAME, "version": broken}) == 1
    logs = server.logs()
    assert f"in place of version {broken}" in logs and MISSING_MODULE in logs, logs

    # The operator rolls back onto what serves: the fallback ends, nothing reloads.
    RoleAliases(registry).promote(NAME, good)
    deadline = time.monotonic() + 15
    while total(httpx.get(server.url + "/metrics", timeout=10).text, FALLBACK) != 0:
        assert time.monotonic() < deadline, "the fallback gauge did not clear"
        time.sleep(0.2)
    _exact(server, registry_path, good)


def test_a_running_server_keeps_its_version_and_says_it_is_a_fallback(
    registry_path: Path, server_factory: Callable[..., Server]
) -> None:
    broken = register_unloadable(registry_path, NAME)
    server = server_factory(registry_path, env={"MODELSERVE_POLL_INTERVAL_S": "0.5"})
    server.wait_ready()
    Registry(registry_path).set_alias(NAME, "production", broken)
    deadline = time.monotonic() + 15
    while total(httpx.get(server.url + "/metrics", timeout=10).text, FALLBACK) != 1:
        assert time.monotonic() < deadline, "no fallback gauge after the alias moved"
        time.sleep(0.2)
    assert httpx.get(server.url + "/health/ready", timeout=10).status_code == 200
    _exact(server, registry_path, "1")


def test_nothing_loadable_in_the_alias_history_is_not_ready(
    registry_path: Path, server_factory: Callable[..., Server]
) -> None:
    broken = register_unloadable(registry_path, NAME)
    doc = {"aliases": {"production": broken}, "history": []}
    (registry_path / NAME / "aliases.json").write_text(json.dumps(doc))
    server = server_factory(registry_path)
    server.wait_ready(path="/health/live")
    deadline = time.monotonic() + 60
    while True:  # until the load has failed (the error is listed), not merely still loading
        ready = httpx.get(server.url + "/health/ready", timeout=10)
        if ready.json()["models"].get(NAME, {}).get("error"):
            break
        assert time.monotonic() < deadline, ready.text
        time.sleep(0.2)
    assert ready.status_code == 503
    assert MISSING_MODULE in ready.json()["models"][NAME]["error"]
    predict = httpx.post(server.url + "/predict", json={"instances": [[0.0] * 30]}, timeout=30)
    assert predict.status_code == 503 and predict.json()["error"]["type"] == "not_ready"
