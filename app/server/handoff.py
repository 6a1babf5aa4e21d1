"""Listening sockets handed from process to process over a UNIX socket (``SCM_RIGHTS``).

This is how systemd socket activation works, done between containers: the compose stack's
``edge`` service (``app.tools.edge``), in the host's network namespace, binds the host port
and *lends* the listening socket on a UNIX socket in a volume the replicas share; a replica
started with ``MODELSERVE_HANDOFF_SOCKET`` *fetches* it and serves it beside its own port.
Every holder accepts from the one kernel queue, so all replicas answer on one host port.

A replica lends its copy too (``held-<hostname>.sock`` beside the edge's socket), so an edge
that restarts while replicas run takes the same socket back instead of binding another port.
The protocol is the descriptor itself: a client connects, receives one byte with the socket
attached, and the connection closes. Only the socket file's owner may connect (umask 022).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from pathlib import Path

HANDOFF_ENV = "MODELSERVE_HANDOFF_SOCKET"
FETCH_WAIT_S = 60.0  # a replica waits this long for the edge (it starts first, normally)

log = logging.getLogger(__name__)


class HandoffError(Exception):
    """No listening socket came from the lender; the message says where it was asked for."""


def _is_listening_tcp(sock: socket.socket) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6) and bool(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    )


def fetch(path: str | Path, timeout_s: float = 5.0) -> socket.socket:
    """One attempt: the listening TCP socket lent at ``path`` (OSError if nobody answers)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout_s)
        conn.connect(str(path))
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 1, 4)
    if not fds:
        raise HandoffError(f"{path} answered without a socket")
    sock = socket.socket(fileno=fds[0])
    for extra in fds[1:]:
        os.close(extra)
    if not _is_listening_tcp(sock):
        sock.close()
        raise HandoffError(f"{path} lent something that is not a listening TCP socket")
    return sock


def fetch_with_retry(
    path: str | Path, wait_s: float = FETCH_WAIT_S, every_s: float = 0.5
) -> socket.socket:
    """Fetch, retrying while the lender starts (no socket file yet, refused, no answer)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return fetch(path)
        except OSError as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise HandoffError(
                f"no listening socket from {path} within {wait_s:.0f} s ({last}); the edge "
                "service lends it: is it running? (docker compose logs edge)"
            ) from last
        time.sleep(every_s)


def held_path(handoff_path: str | Path, name: str | None = None) -> Path:
    """Where a replica lends its copy back: ``held-<hostname>.sock`` beside the edge's socket."""
    return Path(handoff_path).parent / f"held-{name or socket.gethostname()}.sock"


def held_paths(handoff_path: str | Path) -> list[Path]:
    return sorted(Path(handoff_path).parent.glob("held-*.sock"))


class Lender:
    """Lends ``sock`` to whoever connects to ``path``, from a daemon thread, until closed."""

    def __init__(self, sock: socket.socket, path: str | Path) -> None:
        self.sock = sock.dup()  # our own descriptor: whoever serves ``sock`` may close theirs
        self.path = Path(path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.thread = threading.Thread(target=self._serve, name="socket-lender", daemon=True)

    def start(self) -> Lender:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a lender that was killed
        self.server.bind(str(self.path))
        self.server.listen(16)
        self.thread.start()
        return self

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed
            with conn:
                try:
                    conn.settimeout(5)
                    socket.send_fds(conn, [b"S"], [self.sock.fileno()])
                except OSError as exc:  # the asker gave up; the next one is served all the same
                    log.debug("lending %s: %s", self.path, exc)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        if self.thread.ident is not None:  # started
            self.thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.sock.close()


def describe(sock: socket.socket) -> str:
    """``http://host:port`` of a TCP socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
