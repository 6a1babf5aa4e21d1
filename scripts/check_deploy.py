"""Offline proof of the deploy files (``make check-deploy``): no Docker engine, no network.

Each check is a real validator run on the real file: docker-compose's own ``config``, the
compose-spec / GitHub workflow / dependabot JSON schemas, hadolint, actionlint, and promtool /
amtool on the very Prometheus and Alertmanager configs the compose stack mounts.
``tests/deploy/test_validators.py`` runs the same checks on broken copies to show each can fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
COMPOSE_FILE = ROOT / "docker-compose.yml"


def _tool(name: str) -> str:
    """A validator from this venv if it is there, else from PATH (promtool, amtool: apt)."""
    local = VENV_BIN / name
    return str(local) if local.exists() else name


def _compose_argv(compose_file: Path, *extra: str) -> list[str]:
    # Every profile, so the demo-only simulator is validated too.
    return [_tool("docker-compose"), "-f", str(compose_file), "--profile", "*", "config", *extra]


def compose_model(compose_file: Path = COMPOSE_FILE) -> dict[str, object]:
    """The normalised compose model (all profiles), as ``docker compose`` would run it."""
    done = subprocess.run(
        _compose_argv(compose_file, "--format", "json"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    model: dict[str, object] = json.loads(done.stdout)
    return model


def mounted_source(service: str, container_path: str) -> Path:
    """The repo file that compose bind-mounts at ``container_path`` in ``service``."""
    services = compose_model()["services"]
    assert isinstance(services, dict)
    target = PurePosixPath(container_path)
    for mount in services[service].get("volumes", []):
        mounted = PurePosixPath(mount["target"])
        if mount["type"] == "bind" and (target == mounted or mounted in target.parents):
            return Path(mount["source"]) / target.relative_to(mounted)
    raise LookupError(f"{service}: nothing is mounted at {container_path}")


def _prometheus_config(files: Sequence[Path], workdir: Path) -> list[str]:
    """``promtool check config`` on a copy whose rule paths point at the mounted repo files."""
    (source,) = files
    config = yaml.safe_load(source.read_text())
    if isinstance(config, dict) and isinstance(config.get("rule_files"), list):
        config["rule_files"] = [
            str(mounted_source("prometheus", pattern)) for pattern in config["rule_files"]
        ]
    rewritten = workdir / "prometheus.yml"
    rewritten.write_text(yaml.safe_dump(config) if config is not None else source.read_text())
    return [_tool("promtool"), "check", "config", str(rewritten)]


@dataclass(frozen=True)
class Check:
    name: str
    argv: Callable[[Sequence[Path], Path], list[str]]
    default_files: Callable[[], list[Path]]


def _schema(name: str) -> Callable[[Sequence[Path], Path], list[str]]:
    def argv(files: Sequence[Path], _: Path) -> list[str]:
        return [_tool("check-jsonschema"), "--builtin-schema", name, *map(str, files)]

    return argv


def _workflows() -> list[Path]:
    return sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))


CHECKS: dict[str, Check] = {
    check.name: check
    for check in [
        Check(
            "compose-config",
            lambda f, _: _compose_argv(f[0], "-q"),
            lambda: [COMPOSE_FILE],
        ),
        Check("compose-schema", _schema("vendor.compose-spec"), lambda: [COMPOSE_FILE]),
        Check("workflow-schema", _schema("vendor.github-workflows"), _workflows),
        Check("workflow-timeouts", _schema("custom.github-workflows-require-timeout"), _workflows),
        Check(
            "dependabot-schema",
            _schema("vendor.dependabot"),
            lambda: [ROOT / ".github" / "dependabot.yml"],
        ),
        Check(
            "hadolint",
            lambda f, _: [_tool("hadolint"), "--no-color", *map(str, f)],
            lambda: [ROOT / "Dockerfile"],
        ),
        Check(
            "actionlint",
            lambda f, _: [_tool("actionlint"), "-no-color", *map(str, f)],
            _workflows,
        ),
        Check(
            "promtool-config",
            _prometheus_config,
            lambda: [mounted_source("prometheus", "/etc/prometheus/prometheus.yml")],
        ),
        Check(
            "amtool-config",
            lambda f, _: [_tool("amtool"), "check-config", *map(str, f)],
            lambda: [mounted_source("alertmanager", "/etc/alertmanager/alertmanager.yml")],
        ),
    ]
}


def run_check(
    check: Check, files: Sequence[Path] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one validator (on its real files unless ``files`` is given); never raises on failure."""
    with tempfile.TemporaryDirectory(prefix="check-deploy-") as tmp:
        try:
            argv = check.argv(files if files is not None else check.default_files(), Path(tmp))
        except (
            LookupError,
            OSError,
            ValueError,
            yaml.YAMLError,
            subprocess.CalledProcessError,
        ) as exc:
            return subprocess.CompletedProcess([check.name], 2, "", f"{check.name}: {exc}\n")
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


def main(names: Sequence[str]) -> int:
    failed = []
    for name in names or CHECKS:
        done = run_check(CHECKS[name])
        print(f"{'ok  ' if done.returncode == 0 else 'FAIL'} {name}")
        if done.returncode != 0:
            failed.append(name)
            sys.stdout.write(done.stdout + done.stderr)
    if failed:
        print(f"check-deploy: {len(failed)} failed: {', '.join(failed)}")
        return 1
    print(f"check-deploy: all {len(names or CHECKS)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
