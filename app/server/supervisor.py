"""The supervisor of several workers: uvicorn's, with draining workers and a prompt restart.

With several workers uvicorn's supervisor spawns each worker's ``uvicorn.Server`` itself, so
``Supervisor`` and ``DrainingProcess`` are its ``Multiprocess`` and ``Process`` (uvicorn 0.54,
``uvicorn/supervisors/multiprocess.py``) with ``DrainingServer`` in the workers. The supervisor
also passes its stop signal on at once (it read its signals every 0.5 s) and as what it means:
every SIGTERM it gets becomes a SIGTERM to each worker (the first starts the drain, the next
ends it), a SIGINT two SIGTERMs. Ctrl-C needs no help: the terminal signals every process of
the group, workers included. Once the workers are told, it closes its own copy of the listening
socket, so that when the last worker closes its listener, connections are refused rather than
queued on a socket nobody accepts from.

A worker that dies while the supervisor is waiting for its answer to a health check (the
OOM killer, a SIGKILL) is seen dead at once: uvicorn waits on the ping pipe alone, whose other
end the supervisor itself still holds, so no end-of-file comes and the check lasts its whole
``timeout_worker_healthcheck`` (30 s here) before the replacement starts. Here the check also
waits on the process's sentinel.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import socket
import sys
import time
from multiprocessing.connection import wait

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from app.server.drain import DrainingServer

SIGNAL_POLL_S = 0.05  # how often the supervisor looks at the signals it got (uvicorn: 0.5 s)
WORKER_CHECK_S = 0.5  # how often it pings its workers, as uvicorn does
FOLLOW_UP_S = 0.25  # between two SIGTERMs to one worker: never merged into one by the kernel

uvicorn_log = logging.getLogger("uvicorn.error")  # the supervisor's lines, as uvicorn's own


class DrainingProcess(Process):
    """uvicorn's worker process, running a ``DrainingServer`` (pickled to the spawned child)."""

    def __init__(
        self, config: uvicorn.Config, sockets: list[socket.socket], drain_s: float
    ) -> None:
        self.drain_s = drain_s
        super().__init__(config, sockets)

    def _healthcheck(self, timeout: float) -> bool | None:
        """The worker's startup flag, or None if it does not answer in time or exits first."""
        try:
            self.parent_conn.send(b"ping")
            if self.parent_conn not in wait([self.parent_conn, self.process.sentinel], timeout):
                return None
            started: bool = self.parent_conn.recv()
            return started
        except (OSError, EOFError, pickle.UnpicklingError):
            return None

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = DrainingServer(self.config, self.drain_s)
        return self._server


class Supervisor(Multiprocess):
    """uvicorn's supervisor with draining workers. Its loop and the methods that start or
    retire workers follow uvicorn 0.54's own (``Process`` replaced; a worker retired by SIGHUP
    or SIGTTOU does not drain); stopping is described in the module."""

    def __init__(
        self, config: uvicorn.Config, sockets: list[socket.socket], drain_s: float
    ) -> None:
        super().__init__(config, sockets)
        self.drain_s = drain_s
        self.sigterms_owed = 0  # SIGTERMs each worker is to get (2: stop without a drain)
        self._sent: dict[int, tuple[int, float]] = {}  # worker pid -> (SIGTERMs sent, last)

    def new_process(self) -> DrainingProcess:
        process = DrainingProcess(self.config, self.sockets, self.drain_s)
        process.start()
        return process

    # ---- uvicorn's, starting DrainingProcess ----
    def init_processes(self) -> None:
        for _ in range(self.processes_num):
            self.processes.append(self.new_process())

    def run(self) -> None:
        uvicorn_log.info(f"Started parent process [{os.getpid()}]")
        self.init_processes()
        checked = time.monotonic()
        while not self.should_exit.wait(SIGNAL_POLL_S):
            self.handle_signals()
            if not self.should_exit.is_set() and time.monotonic() - checked >= WORKER_CHECK_S:
                self.keep_subprocess_alive()
                checked = time.monotonic()
        self.terminate_all()
        self.join_all()
        uvicorn_log.info(f"Stopping parent process [{os.getpid()}]")

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for idx, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung: kill it
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                uvicorn_log.error(
                    f"Child process [{process.pid}] failed to start, stopping the parent process."
                )
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            uvicorn_log.info(f"Child process [{process.pid}] died")
            self.processes[idx] = self.new_process()

    def restart_all(self) -> None:
        """SIGHUP: each worker replaced by a ready new one; the old one stops without a drain
        (the replica keeps serving: its readiness must not turn 503)."""
        for idx, old_process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new_process = self.new_process()
            timeout = self.config.timeout_worker_healthcheck
            if not new_process.wait_until_ready(timeout, self.should_exit):
                new_process.kill()
                new_process.join()
                if not self.should_exit.is_set():
                    uvicorn_log.error(
                        f"New child process [{new_process.pid}] was not ready in time; "
                        f"keeping worker [{old_process.pid}] and aborting the restart."
                    )
                return
            self.stop_without_drain(old_process)
            old_process.join()
            self.processes[idx] = new_process

    def handle_ttin(self) -> None:
        uvicorn_log.info("Received SIGTTIN, increasing the number of processes.")
        self.processes_num += 1
        self.processes.append(self.new_process())

    def handle_ttou(self) -> None:
        uvicorn_log.info("Received SIGTTOU, decreasing number of processes.")
        if self.processes_num <= 1:
            uvicorn_log.info("Already reached one process, cannot decrease it any further.")
            return
        self.processes_num -= 1
        process = self.processes.pop()
        self.stop_without_drain(process)
        process.join()

    @staticmethod
    def stop_without_drain(process: Process) -> None:
        """SIGINT, not uvicorn's SIGTERM: one worker of several leaves while the others keep
        serving the shared socket, so it has nothing to drain and must not answer 503."""
        if process.pid is not None and process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGINT)
            uvicorn_log.info(f"Terminated child process [{process.pid}]")
        process.parent_conn.close()
        process.child_conn.close()

    # ---- stopping ----
    def handle_int(self) -> None:
        self.sigterms_owed = 2
        super().handle_int()

    def handle_term(self) -> None:
        self.sigterms_owed = max(self.sigterms_owed, 1)
        super().handle_term()

    def terminate_all(self) -> None:
        """The first SIGTERM to every worker; the supervisor's copy of the listener closes."""
        self.sigterms_owed = max(self.sigterms_owed, 1)
        self._pass_on()
        for process in self.processes:
            if process.exitcode is None:
                uvicorn_log.info(f"Terminated child process [{process.pid}]")
                process.parent_conn.close()
                process.child_conn.close()
        for sock in self.sockets:
            sock.close()

    def join_all(self) -> None:
        """Until every worker has exited; a stop signal meanwhile ends their drain."""
        for process in self.processes:
            uvicorn_log.info(f"Waiting for child process [{process.pid}]")
        while True:
            for sig in tuple(self.signal_queue):
                self.signal_queue.remove(sig)
                if sig in (signal.SIGINT, signal.SIGTERM) and self.sigterms_owed < 2:
                    uvicorn_log.info(
                        f"Received {signal.Signals(sig).name} again: the workers stop draining."
                    )
                    self.sigterms_owed = 2
            self._pass_on()
            alive = [p for p in self.processes if p.process.is_alive()]
            if not alive:
                return
            alive[0].process.join(SIGNAL_POLL_S)

    def _pass_on(self) -> None:
        """Each live worker gets the SIGTERMs it is owed, ``FOLLOW_UP_S`` apart."""
        now = time.monotonic()
        for process in self.processes:
            pid = process.pid
            if pid is None or process.exitcode is not None:
                continue
            sent, last = self._sent.get(pid, (0, 0.0))
            if sent < self.sigterms_owed and (sent == 0 or now - last >= FOLLOW_UP_S):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
                self._sent[pid] = (sent + 1, now)


def serve(config: uvicorn.Config, drain_s: float) -> None:
    """``uvicorn.run`` for these options (uvicorn 0.54's ``uvicorn/main.py``: no reload, no UNIX
    socket), with the draining server, and the supervisor when there are several workers."""
    if config.workers > 1:
        sock = config.bind_socket()
        Supervisor(config, [sock], drain_s).run()
        return
    config.load_app()  # fail early on a bad import string, as uvicorn.run does
    server = DrainingServer(config, drain_s)
    with contextlib.suppress(KeyboardInterrupt):  # SIGINT, re-raised once the server stopped
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
