"""The compose stack checks of ``make stack-test`` (project ``modelserve-stack-test``).

The committed docker-compose.yml and configs are used as they are; an override file only moves
Prometheus' and Alertmanager's host ports to free ones, so a Prometheus already on 9090 does not
collide with the test. The API's host port is the one the ``edge`` service names in its log
(the first free one of 8000-8009; the test holds 8000 with a program outside Docker).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from scripts.stack_test_engine import ROOT, example_and_truth, run, wait_until
from tests.helpers.support import free_port

PROJECT = "modelserve-stack-test"
SERVICES = ("edge", "modelserve", "prometheus", "alertmanager", "alert-webhook")
ANNOUNCED = re.compile(r"modelserve API on http://127\.0\.0\.1:(\d+)(?: \((.*)\))?$", re.M)
# A replica's own count of GET /health/live (nothing else asks it; the healthcheck asks
# /health/ready), from inside its container: its :8000 is not on the host.
COUNT_LIVE = (
    "import urllib.request as u; t = u.urlopen('http://127.0.0.1:8000/metrics', timeout=10)"
    ".read().decode(); print(sum(float(line.rsplit(' ', 1)[1]) for line in t.splitlines()"
    " if line.startswith('http_requests_total{') and 'handler=\"/health/live\"' in line))"
)
FRESH_CONNECTIONS = 60
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
        for chosen in ("MODELSERVE_HOST_PORTS", "MODELSERVE_HOST_IP"):  # the defaults, tested
            self.env.pop(chosen, None)
        self.holder: socket.socket | None = None
        self.is_up = False

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

    def announced(self) -> tuple[int, str]:
        """The edge's last "modelserve API on ..." line: the port and why that one."""
        logs = self.compose("logs", "--no-log-prefix", "edge").stdout
        found = ANNOUNCED.findall(logs)
        assert found, f"no port named in the edge's log:\n{logs[-2000:]}"
        port, why = found[-1]
        return int(port), why

    def api_ports(self) -> list[int]:
        return [self.announced()[0]]

    def replica_live_counts(self) -> dict[str, float]:
        """Each replica's count of GET /health/live, from its own /metrics."""
        return {
            cid[:12]: float(run("docker", "exec", cid, "python", "-c", COUNT_LIVE).stdout)
            for cid in self.compose("ps", "-q", "modelserve").stdout.split()
        }

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
        self.up_services()  # issue #15: this failed with "address already in use"
        return f"up and healthy: {', '.join(SERVICES)}"

    def check_port_taken(self) -> list[str]:
        port, why = self.announced()
        assert 8000 < port <= 8009, (port, why)
        assert "in use" in why and "8000" in re.findall(r"\d+", why), why  # "8000 was in use"
        example, truth = example_and_truth()
        url = f"http://127.0.0.1:{port}"
        body = httpx.post(f"{url}/predict", json={"instances": [example]}, timeout=10).json()
        assert body["predictions"] == truth, body
        asked = self.compose("exec", "-T", "edge", "python", "-m", "app.tools.edge", "--check")
        assert asked.stdout.strip() == f"modelserve API on {url}", asked.stdout
        held = "held by this test" if self.holder else "already held by another program"
        return [
            f"edge log: modelserve API on {url} ({why}); 8000 {held}",
            f"/predict on {port}: {truth}; `edge --check` names the same URL",
        ]

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
        return [
            f"targets up: {', '.join(up)}",
            f"{len(groups)} rule groups, {len(rules)} rules",
            self.spread(),
            self.replica_ports(),
        ]

    def replica_ports(self) -> str:
        """Each replica's own loopback port (where Docker Desktop cannot share the host's
        network with the edge) answers too: `docker compose port --index N modelserve 8000`."""
        found = []
        for index in (1, 2, 3):
            address = self.compose("port", "--index", str(index), "modelserve", "8000").stdout
            host, _, port = address.strip().rpartition(":")
            assert host == "127.0.0.1", address
            answer = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=10)
            assert answer.status_code == 200, (address, answer.text)
            found.append(port)
        return f"each replica also on its own loopback port: {', '.join(found)}"

    def spread(self) -> str:
        """Requests over fresh connections to the one host port reach more than one replica."""
        (port,) = self.api_ports()
        before = self.replica_live_counts()
        for _ in range(FRESH_CONNECTIONS):
            with httpx.Client(timeout=10) as client:  # a new connection each time
                client.get(f"http://127.0.0.1:{port}/health/live").raise_for_status()
        after = self.replica_live_counts()
        served = {cid: after[cid] - before.get(cid, 0.0) for cid in after}
        assert len(served) == 3 and sum(served.values()) == FRESH_CONNECTIONS, served
        assert sum(1 for n in served.values() if n > 0) > 1, served
        counts = ", ".join(f"{cid} {n:.0f}" for cid, n in sorted(served.items()))
        return f"{FRESH_CONNECTIONS} requests on 127.0.0.1:{port}, one per connection: {counts}"

    def check_demo(self) -> list[str]:
        # --scale: `up simulate` converges its dependency modelserve too, back to one replica
        # without it, and the later checks (a paused replica, restarts) would see only that one.
        self.compose(
            "up",
            "-d",
            "--no-build",
            "--pull",
            "never",
            "--no-recreate",
            "--scale",
            "modelserve=3",
            "simulate",
        )
        assert len(self.compose("ps", "-q", "modelserve").stdout.split()) == 3
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

    def check_edge_restart(self) -> list[str]:
        """A restarted edge takes the replicas' socket back: same port, still answering."""
        (port,) = self.api_ports()
        self.compose("restart", "edge", timeout=120)
        self.up_services(services=("edge",))  # waits for its healthcheck
        again, why = self.announced()
        assert again == port and "kept over this restart" in why, (port, again, why)
        example, truth = example_and_truth()
        body = httpx.post(
            f"http://127.0.0.1:{port}/predict", json={"instances": [example]}, timeout=10
        ).json()
        assert body["predictions"] == truth, body
        return [f"edge log after the restart: port {again} ({why})", f"/predict {truth}"]

    def check_restart(self) -> list[str]:
        from scripts.stack_test_feedback import feedback_through_restart

        before = set(self.compose("ps", "-q", "modelserve").stdout.split())

        def restart() -> None:
            self.compose("restart", "modelserve", timeout=180)

        lines = feedback_through_restart(self.api_ports, restart)
        self.up_services("--scale", "modelserve=3", "--no-recreate")  # all three healthy again
        assert set(self.compose("ps", "-q", "modelserve").stdout.split()) == before
        # The same three containers, restarted: they fetched the socket again, from the edge
        # that was itself restarted.
        lines.append(self.spread())
        return lines

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
