"""Where the prediction log's flushes go: the backend in this process, or a writer process.

A server worker writes through ``ProcessSink``: its writer thread packs each flush
(``app.monitoring.logpack.pack``: a few arrays), hands it to ``python -m
app.monitoring.logwriter`` over a pipe and waits for the answer, so ``flush()`` still means
committed and a failure is still counted by the worker. Why a process: turning rows into JSON
text holds the GIL, about 4 µs a row; in a thread, every flush of a busy worker held the event
loop for milliseconds (5 ms of the p99 and 8 % of req/s at c=64). Stacking the arrays takes a
tenth of that; the text is made on another core.

The writer process is started at the first flush and again after it dies; the rows of a flush
it did not answer are counted as not written. It ends at the end of its input: when the log
stops, or when the worker is gone.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from app.frames import helper_env, read_frame, write_frame
from app.monitoring.backend import open_backend
from app.monitoring.logpack import Batch, serialize
from app.monitoring.records import LogBackend, LogBackendError


class Sink(Protocol):
    def write(self, batches: list[Batch]) -> None:
        """Store the rows, or raise (they are counted as not written)."""

    def close(self) -> None: ...


class BackendSink:
    """Serializes and writes in the calling thread."""

    def __init__(self, backend: LogBackend) -> None:
        self.backend = backend

    def write(self, batches: list[Batch]) -> None:
        self.backend.write_predictions([row for batch in batches for row in serialize(batch)])

    def close(self) -> None:
        """The backend belongs to its owner, who closes it."""


@dataclass(frozen=True)
class Start:
    database_url: str | None
    default_path: Path


class ProcessSink:
    """Serializes and writes in a process of its own (started on first use)."""

    STOP_TIMEOUT_S = 10.0

    def __init__(self, database_url: str | None, default_path: Path) -> None:
        self._start = Start(database_url, default_path)
        self._proc: subprocess.Popen[bytes] | None = None
        self.command = [sys.executable, "-m", "app.monitoring.logwriter"]

    def write(self, batches: list[Batch]) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._stop(kill=True)  # it died between flushes: nothing of this one is lost
        try:
            proc = self._proc if self._proc is not None else self._spawn()
            assert proc.stdin is not None and proc.stdout is not None
            write_frame(proc.stdin, batches)
            reply = read_frame(proc.stdout)
        except (OSError, ValueError):  # it could not start, or its end of the pipe is closed
            reply = None
        if reply is None:
            code = self._stop(kill=True)
            raise LogBackendError(f"the log writer process exited (code {code}) before answering")
        if reply:
            raise LogBackendError(reply)

    def close(self) -> None:
        self._stop(kill=False)

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = helper_env() | {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}  # no algebra
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self._proc.stdin is not None
        write_frame(self._proc.stdin, self._start)
        return self._proc

    def _stop(self, *, kill: bool) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if kill:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(OSError):
            _close(proc.stdin)  # end of input: it exits
        try:
            code = proc.wait(self.STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        _close(proc.stdout)
        return code


def _close(stream: IO[Any] | None) -> None:
    if stream is not None:
        stream.close()


def _answer(sink: Sink, batches: list[Batch]) -> str:
    try:
        sink.write(batches)
    except Exception as exc:  # the server counts and logs it
        return str(exc) or type(exc).__name__
    return ""


def main() -> None:
    # Ctrl-C reaches the whole process group: the server stops this one (end of input).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reader, writer = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the answers
    start = read_frame(reader)
    if not isinstance(start, Start):
        return
    backend = open_backend(start.database_url, start.default_path)
    sink = BackendSink(backend)
    while (batches := read_frame(reader)) is not None:
        write_frame(writer, _answer(sink, batches))
    backend.close()


if __name__ == "__main__":
    # Run as the package module, so the classes unpickled here are the ones the server sent.
    from app.monitoring.logwriter import main as run

    run()
