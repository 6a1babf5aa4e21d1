"""The compose stack checks of ``make stack-test`` (project ``modelserve-stack-test``).

The committed docker-compose.yml and configs are used as they are; an override file only moves
Prometheus', Alertmanager's and HAProxy's stats host ports to free ones, so a Prometheus already
on 9090 does not collide with the test (the balancer's API port is the committed line, copied).
The API's host port is the documented setting: with 127.0.0.1:8000 held by a program outside
Docker, ``docker compose up`` fails with the engine's error, and ``MODELSERVE_HOST_PORT`` set to
a free port brings it up there.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import httpx
import yaml

from scripts import stack_test_balancer as balancer
from scripts.stack_test_engine import LABEL, ROOT, example_and_truth, run, wait_until
from tests.helpers.grpc_client import infer_request, outputs, stub
from tests.helpers.support import free_port

PROJECT = "modelserve-stack-test"
SERVICES = ("balancer", "modelserve", "prometheus", "alertmanager", "alert-webhook")
HAPROXY_CFG = "/usr/local/etc/haproxy/haproxy.cfg"
# A replica's own count of a series (summed over the samples of that name whose line holds the
# second argument), from inside its container: its :8000 is not on the host. GET /health/live
# is asked by nothing else (the healthcheck asks /health/ready).
COUNT = (
    "import sys, urllib.request as u; t = u.urlopen('http://127.0.0.1:8000/metrics', timeout=10)"
    ".read().decode(); print(sum(float(line.rsplit(' ', 1)[1]) for line in t.splitlines()"
    " if line.startswith(sys.argv[1] + '{') and sys.argv[2] in line))"
)
LIVE = ("http_requests_total", 'handler="/health/live"')
GRPC_INFER = ("modelserve_grpc_requests_total", 'method="ModelInfer"')
GRPC_CALLS = 90
FRESH_CONNECTIONS = 300
OVERRIDE = """\
services:
  prometheus:
    ports: !override ["127.0.0.1:{prometheus}:9090"]
  alertmanager:
    ports: !override ["127.0.0.1:{alertmanager}:9093"]
  balancer:
    ports: !override {balancer}
"""


def _balancer_ports(stats: int) -> str:
    """The committed balancer ports, its API and gRPC lines unchanged, the stats port moved."""
    committed = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    ports = [str(p) for p in committed["services"]["balancer"]["ports"]]
    (api,) = [p for p in ports if p.endswith(":8000")]
    (grpc_line,) = [p for p in ports if p.endswith(":8081")]
    return json.dumps([api, grpc_line, f"127.0.0.1:{stats}:8404"])


class Stack:
    def __init__(self, image: str) -> None:
        self.image = image
        self.tmp = Path(tempfile.mkdtemp(prefix="stack-test-"))
        self.prometheus_port, self.alertmanager_port = free_port(), free_port()
        self.stats_port = free_port()
        (self.tmp / "override.yml").write_text(
            OVERRIDE.format(
                prometheus=self.prometheus_port,
                alertmanager=self.alertmanager_port,
                balancer=_balancer_ports(self.stats_port),
            )
        )
        self.env = {**os.environ, "MODELSERVE_IMAGE": image, "COMPOSE_PROJECT_NAME": PROJECT}
        for chosen in ("MODELSERVE_HOST_PORT", "MODELSERVE_GRPC_HOST_PORT", "MODELSERVE_HOST_IP"):
            self.env.pop(chosen, None)
        self.host_port = 8000
        self.stats_url = f"http://127.0.0.1:{self.stats_port}/stats"
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

    def api_ports(self) -> list[int]:
        return [self.host_port]

    def replicas(self) -> list[str]:
        return self.compose("ps", "-q", "modelserve").stdout.split()

    def replica_counts(self, series: tuple[str, str] = LIVE) -> dict[str, float]:
        """Each replica's count of ``series`` (default: GET /health/live), from its /metrics."""
        return {
            cid[:12]: float(run("docker", "exec", cid, "python", "-c", COUNT, *series).stdout)
            for cid in self.replicas()
        }

    def prom(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.prometheus_port}{path}"
        return httpx.get(url, params=params, timeout=10).json()["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.prom("/api/v1/query", query=expr)["result"]
        return result

    # ---- checks ----
    def check_port_taken(self) -> list[str]:
        """The config passes ``haproxy -c`` in the image; with 127.0.0.1:8000 held by a program
        outside Docker (if it is free), ``compose up`` fails with the engine's own error."""
        checked = run(
            "docker", "run", "--rm", "--label", f"{LABEL}=1",
            "-v", f"{ROOT / 'deploy/haproxy/haproxy.cfg'}:{HAPROXY_CFG}:ro",
            "haproxy:2.6", "haproxy", "-c", "-f", HAPROXY_CFG,
        )  # fmt: skip
        assert "Configuration file is valid" in checked.stdout + checked.stderr, checked
        self.holder = _hold(8000)
        refused = self.up_services(check=False, services=("balancer",))
        error = refused.stderr.strip().splitlines()[-1] if refused.stderr.strip() else ""
        assert refused.returncode != 0, refused.stdout + refused.stderr
        assert "8000" in error and any(
            why in error for why in ("address already in use", "port is already allocated")
        ), refused.stderr
        held = "held by this test" if self.holder else "already held by another program"
        return [
            f"haproxy -c {HAPROXY_CFG}: valid",
            f"127.0.0.1:8000 {held}: compose up failed: ...{error[-110:]}",
        ]

    def up(self) -> list[str]:
        """The documented way out: ``MODELSERVE_HOST_PORT=<free port> docker compose up -d``."""
        self.host_port = free_port()
        self.env["MODELSERVE_HOST_PORT"] = str(self.host_port)
        self.up_services()  # the balancer, recreated on the new port, and the rest
        balancer.wait_up(self.stats_url, 1, 60)
        example, truth = example_and_truth()
        url = f"http://127.0.0.1:{self.host_port}"
        body = httpx.post(f"{url}/predict", json={"instances": [example]}, timeout=10).json()
        assert body["predictions"] == truth, body
        (cid,) = self.compose("ps", "-q", "balancer").stdout.split()
        pid = run("docker", "inspect", "-f", "{{.State.Pid}}", cid).stdout.strip()
        uid = next(
            line.split()[1]
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("Uid:")
        )
        assert uid != "0", f"haproxy runs as root in {cid[:12]}"
        return [
            f"up (healthy where a service has a check): {', '.join(SERVICES)}",
            f"MODELSERVE_HOST_PORT={self.host_port}: /predict on {url} through HAProxy: {truth}",
            f"haproxy runs as uid {uid}; its stats on 127.0.0.1:{self.stats_port}",
        ]

    def check_scaled(self) -> list[str]:
        self.up_services("--scale", "modelserve=3", "--no-recreate")
        found = balancer.wait_up(self.stats_url, 3, 60)
        ips = {balancer.container_ip(cid) for cid in self.replicas()}
        assert set(found) == ips, (found, ips)

        def all_up() -> list[str]:
            targets = self.prom("/api/v1/targets")["activeTargets"]
            replicas = [
                t["scrapeUrl"]
                for t in targets
                if t["labels"]["job"] == "modelserve" and t["health"] == "up"
            ]
            up = {
                r["metric"]["instance"]: r["value"][1] for r in self.query('up{job="modelserve"}')
            }
            haproxy = self.query('up{job="haproxy"} == 1')
            active = self.query('haproxy_backend_active_servers{proxy="modelserve"} == 3')
            active = active and self.query(
                'haproxy_backend_active_servers{proxy="modelserve-grpc"} == 3'
            )
            ready = len(replicas) == 3 and set(up.values()) == {"1"} and len(up) == 3
            return replicas if ready and haproxy and active else []

        up = wait_until(
            "three modelserve targets up, and HAProxy's backends with 3 active servers each",
            all_up,
            150,
        )
        groups = self.prom("/api/v1/rules")["groups"]
        rules = [r["name"] for g in groups for r in g["rules"]]
        assert "ModelserveDown" in rules and "model_version:modelserve_accuracy:ratio1h" in rules
        return [
            f"HAProxy's servers UP: {', '.join(f'{n} {ip}' for ip, n in sorted(found.items()))}",
            f'Prometheus: up == 1 for {", ".join(up)}; up{{job="haproxy"}} == 1 and '
            'haproxy_backend_active_servers{proxy=~"modelserve|modelserve-grpc"} == 3',
            f"{len(groups)} rule groups, {len(rules)} rules",
            self.spread(),
            self.grpc_spread(),
        ]

    def grpc_spread(self) -> str:
        """gRPC calls on one HTTP/2 connection to the balancer's gRPC port are spread call by
        call over every replica, and each answer is the model's own."""
        example, truth = example_and_truth()
        before = self.replica_counts(GRPC_INFER)
        request = infer_request("breast-cancer", [("input-0", "FP64", [example])], raw=True)
        with grpc.insecure_channel("127.0.0.1:8081") as channel:
            call = stub(channel).ModelInfer
            answers = [outputs(call(request, timeout=10))["predict"][2] for _ in range(GRPC_CALLS)]
        assert all(a == truth for a in answers), answers[:3]
        after = self.replica_counts(GRPC_INFER)
        served = {cid: after[cid] - before.get(cid, 0.0) for cid in after}
        assert len(served) == 3 and sum(served.values()) == GRPC_CALLS, served
        assert all(n > 0 for n in served.values()), served
        counts = ", ".join(f"{cid} {n:.0f}" for cid, n in sorted(served.items()))
        return f"{GRPC_CALLS} gRPC ModelInfer calls on one connection to :8081: {counts}"

    def spread(self) -> str:
        """Requests over fresh connections to the one host port reach every replica."""
        (port,) = self.api_ports()
        before = self.replica_counts()
        for _ in range(FRESH_CONNECTIONS):
            with httpx.Client(timeout=10) as client:  # a new connection each time
                client.get(f"http://127.0.0.1:{port}/health/live").raise_for_status()
        after = self.replica_counts()
        served = {cid: after[cid] - before.get(cid, 0.0) for cid in after}
        assert len(served) == 3 and sum(served.values()) == FRESH_CONNECTIONS, served
        assert all(n > 0 for n in served.values()), served
        counts = ", ".join(f"{cid} {n:.0f}" for cid, n in sorted(served.items()))
        return f"{FRESH_CONNECTIONS} requests on 127.0.0.1:{port}, one per connection: {counts}"

    def check_stop(self) -> list[str]:
        """One replica stopped (``docker stop``: SIGTERM) under c=16 load through the balancer:
        0 failed requests, every answer exact (``stack_test_balancer.stop_under_load``); then
        it is started again and HAProxy puts it back in the rotation."""
        victim = self.replicas()[0]
        example, truth = example_and_truth()
        lines = balancer.stop_under_load(
            f"http://127.0.0.1:{self.host_port}",
            self.stats_url,
            balancer.slot_of(self.stats_url, victim),
            balancer.docker_stop(victim),
            {"instances": [example]},
            truth,
        )
        started = time.monotonic()
        run("docker", "start", victim)
        back = balancer.wait_up(self.stats_url, 3, 120)
        assert balancer.container_ip(victim) in back, back
        lines.append(f"started again: UP in HAProxy after {time.monotonic() - started:.1f} s")
        self.up_services("--scale", "modelserve=3", "--no-recreate")
        return lines

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
        assert len(self.replicas()) == 3
        acc = wait_until(
            "accuracy series", lambda: self.query("model_version:modelserve_accuracy:ratio1h"), 180
        )
        psi = wait_until(
            "PSI series", lambda: self.query("model_version_feature:modelserve_feature_psi:1h"), 120
        )
        value = float(acc[0]["value"][1])
        assert 0.8 <= value <= 1.0, acc
        return [f"accuracy {value:.3f}", f"{len(psi)} PSI series"]

    def check_alert(self) -> list[str]:
        victim = self.replicas()[0]
        run("docker", "pause", victim)
        try:
            down = balancer.down_after_pause(self.stats_url, victim)

            def delivered() -> bool:
                logs = self.compose("logs", "--no-log-prefix", "alert-webhook").stdout
                return '"alertname": "ModelserveDown"' in logs and '"status": "firing"' in logs

            wait_until("ModelserveDown notification at alert-webhook", delivered, 240, every=5)
        finally:
            run("docker", "unpause", victim)
        return [
            f"paused {victim[:12]}: {down} (bound {balancer.DOWN_WITHIN_S} s)",
            "ModelserveDown firing delivered to alert-webhook",
        ]

    def check_balancer_restart(self) -> list[str]:
        """A restarted HAProxy starts with empty slots (``init-addr none``) and finds the three
        replicas again through Docker's DNS; the port answers as before."""
        started = time.monotonic()
        self.compose("restart", "balancer", timeout=120)
        found = balancer.wait_up(self.stats_url, 3, 60)
        took = time.monotonic() - started
        example, truth = example_and_truth()
        body = httpx.post(
            f"http://127.0.0.1:{self.host_port}/predict", json={"instances": [example]}, timeout=10
        ).json()
        assert body["predictions"] == truth, body
        return [
            f"restarted; {len(found)} servers UP again {took:.1f} s after the restart began",
            f"/predict on {self.host_port}: {truth}",
        ]

    def check_restart(self) -> list[str]:
        from scripts.stack_test_feedback import feedback_through_restart

        before = set(self.replicas())

        def restart() -> None:
            self.compose("restart", "modelserve", timeout=180)

        lines = feedback_through_restart(self.api_ports, restart)
        self.up_services("--scale", "modelserve=3", "--no-recreate")  # all three healthy again
        assert set(self.replicas()) == before
        # The same three containers, restarted: HAProxy has them UP again, spread as before.
        balancer.wait_up(self.stats_url, 3, 60)
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
