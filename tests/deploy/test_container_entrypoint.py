"""The image's own CMD and HEALTHCHECK, parsed from the Dockerfile and run as the container would.

Image paths are mapped onto a temporary directory (and /opt/venv onto this venv); host and port
are mapped onto a free loopback port. Everything else, CMD, worker count, multiprocess metrics
directory, is exactly what the Dockerfile says, so the image's entry point cannot silently rot.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.registry.store import Registry
from tests.helpers.dockerfile import Healthcheck, Runtime, duration_seconds, load
from tests.helpers.support import ROOT, copy_registry, free_port

# What the official python image sets before our ENV lines apply.
BASE_IMAGE_ENV = {
    "PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
VENV = Path(sys.executable).parent.parent


@pytest.fixture(scope="module")
def image() -> Runtime:
    return load(ROOT / "Dockerfile", BASE_IMAGE_ENV)


def test_image_contract(image: Runtime) -> None:
    assert image.base.startswith("python:3.11") and image.base.endswith("-slim-bookworm")
    assert image.user is not None and image.user.split(":")[0] not in {"0", "root"}
    assert image.expose == ["8000", "8081"]
    assert image.cmd[:2] == ["modelserve", "serve"]
    # Listening address and worker count come from the environment, not from the CMD.
    assert image.env["MODELSERVE_HOST"] == "0.0.0.0"
    assert image.env["MODELSERVE_PORT"] == "8000"
    assert int(image.env["MODELSERVE_WORKERS"]) >= 1
    assert image.env["MODELSERVE_REGISTRY"] == "/app/models"
    assert image.env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    assert image.env["MODELSERVE_PREDICTION_LOG"].startswith("/app/data/")
    assert image.env["PATH"].startswith("/opt/venv/bin:/usr/local/bin")
    assert image.healthcheck is not None
    assert image.healthcheck.command[0] == "python"
    assert "/health/ready" in " ".join(image.healthcheck.command)
    assert "curl" not in " ".join(image.healthcheck.command)


def _mapped_env(image: Runtime, root: Path, port: int) -> dict[str, str]:
    """The image's environment with its paths moved under ``root`` and onto a loopback port."""
    prefixes = [
        ("/opt/venv", str(VENV)),
        ("/app/", f"{root}/app/"),
        ("/tmp/", f"{root}/tmp/"),
    ]
    env: dict[str, str] = {}
    for key, value in image.env.items():
        if key == "PATH":
            env[key] = value.replace("/opt/venv", str(VENV))
            continue
        # First matching prefix only: a mapped path may itself live under the host's /tmp.
        env[key] = next(
            (new + value[len(old) :] for old, new in prefixes if value.startswith(old)), value
        )
    env["MODELSERVE_HOST"] = "127.0.0.1"  # the container's 0.0.0.0, kept off other interfaces
    env["MODELSERVE_PORT"] = str(port)
    return env


def _run_healthcheck(check: Healthcheck, env: dict[str, str], cwd: Path) -> int:
    timeout = duration_seconds(check.options.get("timeout", "30s"))
    try:
        done = subprocess.run(check.command, env=env, cwd=cwd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124  # Docker counts a timed-out check as a failure, too
    return done.returncode


def _snapshot(path: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
    }


@pytest.fixture
def container_root(tmp_path: Path) -> Iterator[Path]:
    """/app/models (the baked registry), an empty WORKDIR /app, /app/data and a tmpfs /tmp."""
    root = tmp_path / "rootfs"
    copy_registry(root / "app" / "models")
    (root / "app" / "data").mkdir()
    (root / "tmp").mkdir()
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.e2e
def test_cmd_serves_and_healthcheck_reports_healthy(image: Runtime, container_root: Path) -> None:
    assert image.healthcheck is not None
    port = free_port()
    env = _mapped_env(image, container_root, port)
    env["MODELSERVE_SHUTDOWN_DRAIN_S"] = "0"  # SIGTERM below: exit 0 without the 5 s drain
    workdir = container_root / "app"
    executable = shutil.which(image.cmd[0], path=env["PATH"])
    assert executable is not None and Path(executable).parent == VENV / "bin"

    metrics_dir = Path(env["PROMETHEUS_MULTIPROC_DIR"])
    metrics_dir.mkdir(parents=True)
    (metrics_dir / "counter_99999.db").write_bytes(b"stale from a previous container run")
    registry_before = _snapshot(workdir / "models")

    # Nothing listens yet: the health check must say so.
    assert _run_healthcheck(image.healthcheck, env, workdir) != 0

    log_path = container_root / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(image.cmd, env=env, cwd=workdir, stdout=log, stderr=log)
    try:
        # Docker's rules: failures during --start-period do not count; then poll per --interval.
        interval = duration_seconds(image.healthcheck.options.get("interval", "30s"))
        start_period = duration_seconds(image.healthcheck.options.get("start-period", "0s"))
        deadline = time.monotonic() + max(start_period, 60.0) + 30.0
        status = 1
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"CMD exited {proc.returncode}:\n{log_path.read_text()}"
            status = _run_healthcheck(image.healthcheck, env, workdir)
            if status == 0:
                break
            time.sleep(min(interval, 0.5))
        assert status == 0, f"never healthy:\n{log_path.read_text()}"

        url = f"http://127.0.0.1:{port}"
        meta = Registry(workdir / "models").metadata("breast-cancer", "1")
        reply = httpx.post(f"{url}/predict", json={"instances": [meta.example]}, timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json()["model"] == "breast-cancer"

        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        assert "modelserve_predictions_total{" in metrics
        assert 'model="breast-cancer"' in metrics
        # Multiprocess metrics really live in the image's PROMETHEUS_MULTIPROC_DIR, emptied first.
        assert not (metrics_dir / "counter_99999.db").exists()
        assert any(metrics_dir.glob("*.db"))
        # The prediction log (SQLite) is written to the data volume, not the read-only root.
        prediction_log = Path(env["MODELSERVE_PREDICTION_LOG"])
        deadline = time.monotonic() + 30
        while not prediction_log.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert prediction_log.exists(), log_path.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise
    assert code == 0, log_path.read_text()

    # Read-only root filesystem: the baked registry and WORKDIR stay untouched; writes go only
    # to the tmpfs (/tmp) and the data volume (/app/data).
    assert _snapshot(workdir / "models") == registry_before
    assert sorted(p.name for p in workdir.iterdir()) == ["data", "models"]
