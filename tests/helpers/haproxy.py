"""A real ``haproxy`` on loopback in front of ``modelserve serve`` processes, configured from the
compose stack's own ``deploy/haproxy/haproxy.cfg``.

Its ``global`` and ``defaults`` sections and its ``backend modelserve`` (balancing, health
checks, retries) are kept as committed; only what ties them to Docker changes: the DNS
``resolvers`` and the ``server-template`` become one ``server`` line per process, the API and
stats frontends bind free loopback ports, and the gRPC frontend and backend are left out.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx

from scripts.stack_test_balancer import slots
from tests.helpers.support import ROOT, Managed, free_port, stop_process

COMMITTED = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
KEPT = ("global", "defaults", "frontend api", "backend modelserve", "frontend stats")
DOCKER_ONLY = ("resolvers", "resolve-prefer", "init-addr")  # each followed by one value


def sections(text: str) -> list[tuple[str, list[str]]]:
    """(header, raw lines) per section; comments before the first one are dropped."""
    found: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        if raw.strip() and not raw[0].isspace() and not raw.startswith("#"):
            found.append((" ".join(raw.split("#", 1)[0].split()), []))
        elif found:
            found[-1][1].append(raw)
    return found


def _without_docker(default_server: str) -> str:
    words = default_server.split()
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in DOCKER_ONLY:
            skip = True
        else:
            kept.append(word)
    indent = default_server[: len(default_server) - len(default_server.lstrip())]
    return indent + " ".join(kept)


def derived_config(committed: str, servers: dict[str, int], api_port: int, stats_port: int) -> str:
    """The committed configuration, with ``servers`` ({name: loopback port}) as the backend."""
    out: list[str] = []
    for header, lines in sections(committed):
        if header not in KEPT:
            continue
        out.append(header)
        for line in lines:
            words = line.split()
            if header == "frontend api" and words[:1] == ["bind"]:
                line = f"    bind 127.0.0.1:{api_port}"
            elif header == "frontend stats" and words[:1] == ["bind"]:
                line = f"    bind 127.0.0.1:{stats_port}"
            elif header == "backend modelserve" and words[:1] == ["default-server"]:
                line = _without_docker(line)
            elif header == "backend modelserve" and words[:1] == ["server-template"]:
                line = "\n".join(f"    server {n} 127.0.0.1:{p}" for n, p in servers.items())
            out.append(line)
    return "\n".join(out) + "\n"


class HAProxy(Managed):
    """``haproxy -db`` (foreground) with the derived configuration; a context manager."""

    def __init__(self, workdir: Path, servers: dict[str, int]) -> None:
        binary = shutil.which("haproxy")
        assert binary, "haproxy is not installed (the apt package haproxy, .ci/apt-packages.txt)"
        self.binary = binary
        self.api_port, self.stats_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.stats_url = f"http://127.0.0.1:{self.stats_port}/stats"
        self.config = workdir / "haproxy.cfg"
        self.config.write_text(
            derived_config(COMMITTED.read_text(), servers, self.api_port, self.stats_port)
        )
        self.log_path = workdir / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def check(self) -> str:
        done = subprocess.run(
            [self.binary, "-c", "-f", str(self.config)], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def start(self) -> HAProxy:
        self.check()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-db", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def wait_up(self, count: int, timeout: float = 30.0) -> None:
        """Until ``count`` servers of the backend are UP (HAProxy's CSV stats)."""
        deadline = time.monotonic() + timeout
        up = -1
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.logs()
            try:
                up = sum(1 for slot in slots(self.stats_url).values() if slot.status == "UP")
            except httpx.HTTPError:
                up = -1
            if up == count:
                return
            time.sleep(0.1)
        raise TimeoutError(f"{up} servers UP, not {count}, after {timeout} s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)
