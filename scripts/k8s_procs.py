"""Long-running processes of the ``make k8s-test`` cluster: started here, stopped here, only these.

Each process is started (in a network namespace when asked, with ``nsenter --net``, which
execs the program: the pid is the program's own) with its output in a log file, and stopped
by that pid in the reverse order of starting: its stop signal (SIGTERM), then SIGKILL after a
grace period.
Nothing is ever looked up or killed by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def netns_cmd(netns: str | None, *cmd: str) -> list[str]:
    """``cmd`` run in the named network namespace (``ip netns exec`` would remount /sys)."""
    return ["nsenter", f"--net=/var/run/netns/{netns}", "--", *cmd] if netns else list(cmd)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    stop_signal: signal.Signals = signal.SIGTERM

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])


class Processes:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[Proc] = []

    def start(
        self,
        name: str,
        cmd: list[str],
        netns: str | None = None,
        env: dict[str, str] | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        cwd: Path | None = None,
    ) -> Proc:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                netns_cmd(netns, *cmd),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        proc = Proc(name, popen, log, stop_signal)
        self.started.append(proc)
        return proc

    def check_alive(self) -> None:
        """Fail, with its log's tail, if any process we started has exited."""
        for proc in self.started:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited {proc.popen.returncode}:\n{proc.tail()}")

    def stop(self, proc: Proc, grace: float = 15) -> None:
        if proc.popen.poll() is None:
            proc.popen.send_signal(proc.stop_signal)
            try:
                proc.popen.wait(grace)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(10)
        if proc in self.started:
            self.started.remove(proc)

    def stop_all(self, grace: float = 15) -> list[str]:
        stopped = []
        for proc in reversed(list(self.started)):
            start = time.monotonic()
            self.stop(proc, grace)
            stopped.append(f"{proc.name} ({time.monotonic() - start:.1f} s)")
        return stopped
