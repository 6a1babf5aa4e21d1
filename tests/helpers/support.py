"""Helpers for tests that run the real thing: the CLI, server subprocesses, registry copies."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

ROOT = Path(__file__).resolve().parent.parent.parent
MODELS = ROOT / "models"
BIN = Path(sys.executable).parent
MODELSERVE = str(BIN / "modelserve")


def copy_registry(dst: Path) -> Path:
    """A private copy of the repo's registry (never mutate the committed one in tests)."""
    shutil.copytree(MODELS, dst, ignore=shutil.ignore_patterns(".lock", ".tmp-*"))
    return dst


# Ports below the kernel's ephemeral range (32768-60999 on Linux) and below Kubernetes'
# NodePorts (30000-32767), one block per xdist worker, handed out in turn: a port the kernel
# picks for bind(("127.0.0.1", 0)) is free only until it is closed, so two servers of one test
# (or of two workers) could be given the same one; the second fails to bind while the first
# answers its readiness probe and its requests.
_PORTS = range(20000, 30000)


def _port_block() -> range:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    size = len(_PORTS) // max(workers, 1)
    start = _PORTS.start + size * (worker % max(workers, 1))
    return range(start, start + size)


_block = _port_block()
_next = _block.start + (os.getpid() % len(_block))


def free_port() -> int:
    """A loopback port that is free now and that no other call of this test run returns."""
    global _next
    for _ in range(len(_block)):
        port, _next = _next, _block.start + (_next + 1 - _block.start) % len(_block)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free loopback port in {_block}")


def stop_process(
    proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 20.0
) -> int:
    """Send ``sig``, wait up to ``timeout`` s, then kill; the exit code (at once if it ended)."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``modelserve`` console script; never raises on a non-zero exit."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [MODELSERVE, *args], env=full_env, capture_output=True, text=True, timeout=300, **kw
    )


class Managed:
    """A process started on entering a ``with`` block and stopped on leaving it."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Server(Managed):
    """``modelserve serve`` as a subprocess on a free loopback port.

    Use as a context manager; ``wait_ready()`` polls /health/ready. Logs go to ``log_path``.
    """

    def __init__(
        self,
        registry: Path,
        *,
        workdir: Path,
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
        command: list[str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"server-{self.port}.log"
        self.env = {
            **os.environ,
            "MODELSERVE_REGISTRY": str(registry),
            "MODELSERVE_HOST": "127.0.0.1",
            "MODELSERVE_PORT": str(self.port),
            # No drain on SIGTERM (readiness 503 while still serving, default 5 s): tests stop
            # servers all the time; the drain's tests set it (tests/e2e/robustness/test_drain*).
            "MODELSERVE_SHUTDOWN_DRAIN_S": "0",
            **(env or {}),
        }
        self.command = command or [MODELSERVE, "serve", *args]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        return self

    def wait_ready(self, timeout: float = 60.0, path: str = "/health/ready") -> httpx.Response:
        deadline = time.monotonic() + timeout
        last: httpx.Response | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                last = httpx.get(self.url + path, timeout=2)
                if last.status_code == 200:
                    return last
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"not ready after {timeout}s (last: {last}):\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        return 0 if self.proc is None else stop_process(self.proc, sig, timeout)


def wait_all_workers_ready(url: str, streak: int = 20, timeout: float = 90) -> None:
    """Each fresh connection may reach either worker: wait for a streak of 200s in a row."""
    deadline = time.monotonic() + timeout
    in_a_row = 0
    while in_a_row < streak:
        assert time.monotonic() < deadline, f"workers not all ready after {timeout}s"
        try:
            ok = httpx.get(url + "/health/ready", timeout=5).status_code == 200
        except httpx.TransportError:
            ok = False
        in_a_row = in_a_row + 1 if ok else 0
        if not ok:
            time.sleep(0.1)


def child_pids(parent: int, marker: bytes) -> set[int]:
    """The children of ``parent`` whose command line holds ``marker``."""
    found: set[int] = set()
    for task in Path(f"/proc/{parent}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline:
                found.add(int(child))
    return found


def worker_pids(supervisor: int) -> set[int]:
    """The uvicorn worker processes under the supervisor (not multiprocessing's helpers)."""
    return child_pids(supervisor, b"spawn_main")


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (an exited one not yet reaped counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
