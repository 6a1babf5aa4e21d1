"""The compose stack checks of ``make stack-test`` (project ``modelserve-stack-test``).

The committed docker-compose.yml and configs are used as they are; an override file only moves
Prometheus' and Alertmanager's host ports to free ones, so a Prometheus already on 9090 does not
collide with the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from scripts.stack_test_engine import ROOT, run, wait_until
from tests.helpers.support import free_port

PROJECT = "modelserve-stack-test"
SERVICES = ("modelserve", "prometheus", "alertmanager", "alert-webhook")
OVERRIDE = """\
services:
  prometheus:
    ports: !override ["127.0.0.1:{prometheus}:9090"]
  alertmanager:
    ports: !override ["127.0.0.1:{alertmanager}:9093"]
"""


class Stack:
    def __init__(self, image: str) -> None:
        self.image = image
        self.tmp = Path(tempfile.mkdtemp(prefix="stack-test-"))
        self.prometheus_port, self.alertmanager_port = free_port(), free_port()
        (self.tmp / "override.yml").write_text(
            OVERRIDE.format(prometheus=self.prometheus_port, alertmanager=self.alertmanager_port)
        )
        self.env = {**os.environ, "MODELSERVE_IMAGE": image, "COMPOSE_PROJECT_NAME": PROJECT}
        self.env.pop("MODELSERVE_HOST_PORTS", None)
        self.holder: socket.socket | None = None
        self.is_up = False
        self.moved = ""

    # ---- plumbing ----
    def compose(
        self,
        *args: str,
        timeout: float = 300,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            "docker",
            "compose",
            "-p",
            PROJECT,
            "-f",
            str(ROOT / "docker-compose.yml"),
            "-f",
            str(self.tmp / "override.yml"),
            "--profile",
            "demo",
            *args,
        ]
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env or self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)}: {proc.stderr.strip()[-2000:]}")
        return proc

    def up_services(
        self,
        *extra: str,
        env: dict[str, str] | None = None,
        check: bool = True,
        services: tuple[str, ...] = SERVICES,
    ) -> subprocess.CompletedProcess[str]:
        self.is_up = True
        return self.compose(
            "up",
            "-d",
            "--wait",
            "--wait-timeout",
            "180",
            "--no-build",
            "--pull",
            "never",
            *extra,
            *services,
            env=env,
            check=check,
        )

    def modelserve_ports(self) -> list[int]:
        ids = self.compose("ps", "-q", "modelserve").stdout.split()
        ports = []
        for cid in ids:
            out = run("docker", "port", cid, "8000/tcp", check=False).stdout
            ports += [int(line.rsplit(":", 1)[1]) for line in out.splitlines() if ":" in line]
        return sorted(ports)

    def prom(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.prometheus_port}{path}"
        return httpx.get(url, params=params, timeout=10).json()["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.prom("/api/v1/query", query=expr)["result"]
        return result

    # ---- checks ----
    def up(self) -> str:
        """Compose up with 127.0.0.1:8000 held by a program outside Docker (if it is free)."""
        self.holder = _hold(8000)
        proc = self.up_services(check=False)
        if proc.returncode == 0:
            self.moved = "the engine moved along the range"
            return f"up and healthy: {', '.join(SERVICES)}"
        if "address already in use" not in proc.stderr:
            raise AssertionError(f"docker compose up: {proc.stderr.strip()[-2000:]}")
        # Docker 20.10 (Debian 12's docker.io) does not try the next port of a range when a
        # process outside Docker holds the first one; the README documents the variable.
        self.moved = "this engine refused 8000 (address already in use): MODELSERVE_HOST_PORTS"
        self.env["MODELSERVE_HOST_PORTS"] = "8001-8010"
        self.up_services()
        return f"up and healthy after {self.moved}"

    def check_port_taken(self) -> str:
        ports = self.modelserve_ports()
        assert len(ports) == 1 and 8000 < ports[0] <= 8010, ports
        return f"modelserve on 127.0.0.1:{ports[0]} ({self.moved})"

    def check_scaled(self) -> list[str]:
        self.up_services("--scale", "modelserve=3", "--no-recreate")

        def three_up() -> list[str]:
            targets = self.prom("/api/v1/targets")["activeTargets"]
            up = [
                t["scrapeUrl"]
                for t in targets
                if t["labels"]["job"] == "modelserve" and t["health"] == "up"
            ]
            return up if len(up) == 3 else []

        up = wait_until("three modelserve targets up in Prometheus", three_up, 150)
        groups = self.prom("/api/v1/rules")["groups"]
        rules = [r["name"] for g in groups for r in g["rules"]]
        assert "ModelserveDown" in rules and "model_version:modelserve_accuracy:ratio1h" in rules
        return [f"targets up: {', '.join(up)}", f"{len(groups)} rule groups, {len(rules)} rules"]

    def check_demo(self) -> list[str]:
        self.compose("up", "-d", "--no-build", "--pull", "never", "--no-recreate", "simulate")
        acc = wait_until(
            "accuracy series", lambda: self.query("model_version:modelserve_accuracy:ratio1h"), 180
        )
        psi = wait_until(
            "PSI series", lambda: self.query("model_version_feature:modelserve_feature_psi:1h"), 120
        )
        value = float(acc[0]["value"][1])
        assert 0.8 <= value <= 1.0, acc
        return [f"accuracy {value:.3f}", f"{len(psi)} PSI series"]

    def check_alert(self) -> str:
        victim = self.compose("ps", "-q", "modelserve").stdout.split()[0]
        run("docker", "pause", victim)
        try:

            def delivered() -> bool:
                logs = self.compose("logs", "--no-log-prefix", "alert-webhook").stdout
                return '"alertname": "ModelserveDown"' in logs and '"status": "firing"' in logs

            wait_until("ModelserveDown notification at alert-webhook", delivered, 240, every=5)
        finally:
            run("docker", "unpause", victim)
        return f"paused {victim[:12]}: ModelserveDown firing delivered to alert-webhook"

    def check_restart(self) -> list[str]:
        from scripts.stack_test_feedback import feedback_through_restart

        def restart() -> None:
            self.compose("restart", "modelserve", timeout=180)

        return feedback_through_restart(self.modelserve_ports, restart)

    def down(self) -> str:
        self.compose("down", "-v", "--remove-orphans", timeout=180)
        self.is_up = False
        left = run(
            "docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"
        ).stdout
        volumes = run(
            "docker",
            "volume",
            "ls",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={PROJECT}",
        ).stdout
        assert not left.strip() and not volumes.strip(), (left, volumes)
        return "no container or volume of the project left"

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.is_up:
            if kind is not None:
                print(self.compose("logs", "--tail", "40", check=False).stdout[-6000:], flush=True)
            self.compose("down", "-v", "--remove-orphans", timeout=180, check=False)
        if self.holder is not None:
            self.holder.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _hold(port: int) -> socket.socket | None:
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None  # already taken by someone else: the check holds all the same
    sock.listen()
    return sock
