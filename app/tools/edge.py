"""The compose stack's host port: the first free port of a range, lent to every replica.

Docker 20.10 (Debian 12's ``docker.io``) knows only the ports Docker itself holds
(moby/moby#44136) and does not try the next port of a published range when a program outside
Docker holds one, so ``docker compose up`` failed with "address already in use". This service
runs in the host's network namespace (``network_mode: host``), where every program's ports are
visible: it binds the first free port of ``MODELSERVE_HOST_PORTS`` (default 8000-8009) on
``MODELSERVE_HOST_IP`` (default 127.0.0.1), says which in one log line, and lends the listening
socket to the replicas over ``MODELSERVE_HANDOFF_SOCKET`` (``app.server.handoff``). All replicas
then accept on that one port. Restarted while replicas run, it takes their socket back (same
port) before binding anything. ``--check`` asks the running edge and prints the URL.
Run: ``python -m app.tools.edge [--check]``.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from app.server.handoff import (
    HANDOFF_ENV,
    HandoffError,
    Lender,
    describe,
    fetch,
    held_paths,
)

DEFAULT_PORTS = "8000-8009"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_SOCKET = "/run/modelserve/edge.sock"
T = TypeVar("T")
BACKLOG = 2048  # uvicorn's; the replicas listen() again with theirs


class NoFreePortError(Exception):
    """Every port of the range is held by someone."""


def parse_ports(text: str) -> range:
    """``8000-8009`` (inclusive) or one port, ``8000``."""
    first, dash, last = text.strip().partition("-")
    try:
        low = int(first)
        high = int(last) if dash else low
    except ValueError:
        raise ValueError(f"not a port range: {text!r} (e.g. 8000-8009)") from None
    if not 0 < low <= high <= 65535:
        raise ValueError(f"not a port range: {text!r} (e.g. 8000-8009)")
    return range(low, high + 1)


def parse_host(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ValueError(f"not an IP address: {text!r} (e.g. 127.0.0.1, or 0.0.0.0)") from None


def bind_first_free(host: str, ports: range) -> tuple[socket.socket, list[int]]:
    """A socket listening on the first port of ``ports`` nobody holds, and the ports skipped."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    taken: list[int] = []
    for port in ports:
        sock = socket.socket(family, socket.SOCK_STREAM)
        # As uvicorn does: connections of a previous run in TIME_WAIT do not make a port "in
        # use"; any socket listening on it (or bound without SO_REUSEADDR) still does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(BACKLOG)
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            taken.append(port)
            continue
        return sock, taken
    raise NoFreePortError(
        f"every port of {host}:{ports.start}-{ports.stop - 1} is in use; "
        "set MODELSERVE_HOST_PORTS to another range"
    )


def adopt(handoff_path: Path, host: str, ports: range) -> tuple[socket.socket | None, set[str]]:
    """The socket running replicas already serve, if one lends it back and it fits the range.

    Also the URLs replicas serve that do not fit (``MODELSERVE_HOST_PORTS`` or
    ``MODELSERVE_HOST_IP`` changed since they started): they keep serving those until restarted.
    """
    others: set[str] = set()
    for path in held_paths(handoff_path):
        try:
            sock = fetch(path, timeout_s=2)
        except (OSError, HandoffError):
            continue  # a replica that is gone (or paused); the next may answer
        bound_host, port = sock.getsockname()[:2]
        if bound_host == host and port in ports:
            return sock, others
        others.add(describe(sock))
        sock.close()
    return None, others


def announce(sock: socket.socket, taken: list[int], adopted: bool) -> str:
    """The one line a user looks for: where the API is and why there."""
    line = f"modelserve API on {describe(sock)}"
    if adopted:
        return line + " (the port the running replicas serve, kept over this restart)"
    if taken:
        verb = "was" if len(taken) == 1 else "were"
        return line + f" ({', '.join(map(str, taken))} {verb} in use)"
    return line


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(handoff_path: Path, host: str, ports: range) -> int:
    # PID 1 in a container ignores the signals it has no handler for.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sock, others = adopt(handoff_path, host, ports)
    adopted = sock is not None
    for url in sorted(others):
        print(
            f"replicas started before still serve {url}: `docker compose restart modelserve` "
            "moves them to this edge's port",
            flush=True,
        )
    taken: list[int] = []
    if sock is None:
        try:
            sock, taken = bind_first_free(host, ports)
        except (NoFreePortError, OSError) as exc:
            print(f"edge: {exc}", file=sys.stderr, flush=True)
            return 1
    lender = Lender(sock, handoff_path)
    sock.close()  # the lender holds its own descriptor
    try:  # from here a SIGTERM still removes the socket file
        lender.start()
        print(announce(lender.sock, taken, adopted), flush=True)
        while True:
            signal.pause()
    finally:
        lender.close()


def check(handoff_path: Path) -> int:
    """Exit 0 and print the URL if the edge lends a listening socket (the healthcheck)."""
    try:
        sock = fetch(handoff_path, timeout_s=4)
    except (OSError, HandoffError) as exc:
        print(f"edge: nothing lent at {handoff_path}: {exc}", file=sys.stderr)
        return 1
    with sock:
        print(f"modelserve API on {describe(sock)}")
    return 0


def _argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` for argparse, keeping its message (MODELSERVE_HOST_PORTS=80a says why)."""

    def parsed(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ports",
        default=os.environ.get("MODELSERVE_HOST_PORTS", DEFAULT_PORTS),
        type=_argument(parse_ports),
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("MODELSERVE_HOST_IP", DEFAULT_HOST),
        type=_argument(parse_host),
    )
    parser.add_argument("--socket", default=os.environ.get(HANDOFF_ENV, DEFAULT_SOCKET), type=Path)
    parser.add_argument("--check", action="store_true", help="ask the running edge; print the URL")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.socket)
    return serve(args.socket, args.host, args.ports)


if __name__ == "__main__":
    sys.exit(main())
