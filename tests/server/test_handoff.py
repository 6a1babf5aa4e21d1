"""The compose edge's port picking and socket handoff, with real sockets and real processes.

What ``make stack-test`` shows with Docker (issue #15: port 8000 held by a program outside
Docker), shown here without it: the picker skips ports other programs hold, a socket lent over
a UNIX socket serves a real ``modelserve serve``, and a restarted edge keeps the port.
"""

from __future__ import annotations

import errno
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.server.handoff import (
    HANDOFF_ENV,
    HandoffError,
    Lender,
    describe,
    fetch,
    fetch_with_retry,
    held_path,
)
from app.tools.edge import (
    NoFreePortError,
    adopt,
    announce,
    bind_first_free,
    parse_host,
    parse_ports,
)
from app.tools.edge import main as edge_main
from scripts.stack_test_engine import example_and_truth
from tests.helpers.support import (
    ROOT,
    Server,
    copy_registry,
    free_port,
    stop_process,
    wait_all_workers_ready,
)

HOST = "127.0.0.1"


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short directory: a UNIX socket path must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="handoff-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _hold(port: int, *, listen: bool = True) -> socket.socket:
    """A program outside the stack on ``port``: listening as http.server does, or only bound."""
    sock = socket.socket()
    if listen:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    if listen:
        sock.listen()
    return sock


def _free_run(length: int) -> int:
    """The first of ``length`` consecutive loopback ports that are free right now."""
    for _ in range(50):
        base = free_port()
        probes = []
        try:
            for port in range(base, base + length):
                probes.append(_hold(port, listen=False))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return base
    raise AssertionError("no run of free ports")


def _edge(sock_path: Path, ports: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.tools.edge", "--socket", str(sock_path), "--ports", ports],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else "no output"
    return line.rstrip("\n")


def test_the_picker_skips_ports_other_programs_hold() -> None:
    base = _free_run(3)
    holders = [_hold(base), _hold(base + 1, listen=False)]
    try:
        sock, taken = bind_first_free(HOST, range(base, base + 10))
        with sock:
            port = sock.getsockname()[1]
            assert taken == [base, base + 1] and port == base + 2
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            assert announce(sock, taken, adopted=False) == (
                f"modelserve API on http://{HOST}:{port} ({base}, {base + 1} were in use)"
            )
            with pytest.raises(OSError) as taken_by_us:  # and now nobody else gets it
                _hold(port)
            assert taken_by_us.value.errno == errno.EADDRINUSE
    finally:
        for holder in holders:
            holder.close()


def test_connections_in_time_wait_leave_the_port_free() -> None:
    port = _free_run(1)
    server = _hold(port)
    client = socket.create_connection((HOST, port))
    conn, _ = server.accept()
    conn.close()  # the server closes first: its side of the connection stays in TIME_WAIT
    client.close()
    server.close()
    time.sleep(0.2)
    with pytest.raises(OSError):  # what a bind without SO_REUSEADDR would make of it
        _hold(port, listen=False).close()
    sock, taken = bind_first_free(HOST, range(port, port + 1))
    sock.close()
    assert taken == []


def test_a_full_range_names_the_variable_to_change() -> None:
    port = _free_run(1)
    with _hold(port), pytest.raises(NoFreePortError, match="MODELSERVE_HOST_PORTS"):
        bind_first_free(HOST, range(port, port + 1))


def test_ranges_and_hosts_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_ports("8000-8009") == range(8000, 8010)
    assert parse_ports("8001") == range(8001, 8002)
    for bad in ("8009-8000", "0-10", "80a", "8000-70000"):
        with pytest.raises(ValueError, match="not a port range"):
            parse_ports(bad)
    assert parse_host(" 127.0.0.1 ") == "127.0.0.1"
    with pytest.raises(ValueError, match="not an IP address"):
        parse_host("localhost")
    with pytest.raises(SystemExit) as bad_range:  # MODELSERVE_HOST_PORTS=80a says why
        edge_main(["--ports", "80a"])
    assert bad_range.value.code == 2
    assert "not a port range: '80a' (e.g. 8000-8009)" in capsys.readouterr().err


def test_a_replica_waits_for_the_lender_and_says_where_it_looked(sockdir: Path) -> None:
    with pytest.raises(HandoffError, match=r"absent\.sock.*docker compose logs edge"):
        fetch_with_retry(sockdir / "absent.sock", wait_s=0.3, every_s=0.1)

    port = _free_run(1)
    sock, _ = bind_first_free(HOST, range(port, port + 1))
    path = sockdir / "edge.sock"
    lenders: list[Lender] = []
    late = threading.Timer(0.5, lambda: lenders.append(Lender(sock, path).start()))
    late.start()
    try:
        with fetch_with_retry(path, wait_s=20, every_s=0.1) as got:
            assert got.getsockname() == sock.getsockname()
    finally:
        late.join()
        for lender in lenders:
            lender.close()
        sock.close()
    assert not path.exists()  # a closed lender removes its socket file


@pytest.mark.e2e
def test_a_replica_serves_the_lent_socket_beside_its_own_port(
    tmp_path: Path, sockdir: Path
) -> None:
    port = _free_run(1)
    host_sock, _ = bind_first_free(HOST, range(port, port + 1))
    edge_path = sockdir / "edge.sock"
    lender = Lender(host_sock, edge_path).start()
    host_url = describe(host_sock)
    host_sock.close()
    example, truth = example_and_truth()
    server = Server(
        copy_registry(tmp_path / "models"),
        workdir=tmp_path,
        env={HANDOFF_ENV: str(edge_path), "MODELSERVE_WORKERS": "2"},
    ).start()
    try:
        server.wait_ready()
        for url in (host_url, server.url):
            wait_all_workers_ready(url)  # either worker may take a connection
            with httpx.Client(base_url=url, timeout=10) as client:
                assert client.get("/health/ready").status_code == 200
                body = client.post("/predict", json={"instances": [example]}).json()
                assert body["predictions"] == truth, (url, body)
        # It lends its copy back, for an edge that restarts.
        with fetch(held_path(edge_path)) as back:
            assert describe(back) == host_url
        assert f"serving the host's {host_url} too" in server.logs()
        assert server.stop() == 0
        assert not held_path(edge_path).exists()
    finally:
        server.stop()
        lender.close()


def test_the_edge_announces_its_port_and_keeps_it_over_a_restart(sockdir: Path) -> None:
    base = _free_run(1)
    edge_path = sockdir / "edge.sock"
    ports = f"{base}-{min(base + 9, 65535)}"
    holder = _hold(base)  # e.g. `python3 -m http.server` on the first port of the range
    first = _edge(edge_path, ports)
    replica_lender: Lender | None = None
    second: subprocess.Popen[str] | None = None
    try:
        line = _first_line(first)
        found = re.fullmatch(
            r"modelserve API on http://127\.0\.0\.1:(\d+) \((.+) (?:was|were) in use\)", line
        )
        assert found and str(base) in found[2].split(", "), line
        port = int(found[1])
        check = subprocess.run(
            [sys.executable, "-m", "app.tools.edge", "--check", "--socket", str(edge_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 0, check.stderr
        assert check.stdout == f"modelserve API on http://127.0.0.1:{port}\n"

        # A replica takes the socket and lends it back, as run_server does; the edge restarts.
        replica_sock = fetch(edge_path)
        replica_lender = Lender(replica_sock, held_path(edge_path, "replica-1")).start()
        assert stop_process(first) == 0
        assert not edge_path.exists()
        second = _edge(edge_path, ports)
        assert _first_line(second) == (
            f"modelserve API on http://127.0.0.1:{port} "
            "(the port the running replicas serve, kept over this restart)"
        )
        # What the restarted edge lends is the very socket the replica serves: one queue.
        with fetch(edge_path) as again, socket.create_connection((HOST, port), timeout=5):
            again.settimeout(5)
            conn, _ = again.accept()
            conn.close()
        # Another range now: not adopted, and named as what the running replicas still serve.
        assert adopt(edge_path, HOST, range(port + 1, port + 2)) == (
            None,
            {f"http://127.0.0.1:{port}"},
        )
        replica_sock.close()
    finally:
        for proc in (first, second):
            if proc is not None:
                stop_process(proc)
                for stream in (proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()
        if replica_lender is not None:
            replica_lender.close()
        holder.close()


def test_sigterm_stops_the_edge_cleanly(sockdir: Path) -> None:
    edge_path = sockdir / "edge.sock"
    base = _free_run(1)
    edge = _edge(edge_path, str(base))
    try:
        assert _first_line(edge) == f"modelserve API on http://127.0.0.1:{base}"
        edge.send_signal(signal.SIGTERM)
        assert edge.wait(10) == 0
        assert not edge_path.exists()
        _hold(base).close()  # the port is free again
    finally:
        stop_process(edge)
        for stream in (edge.stdout, edge.stderr):
            if stream is not None:
                stream.close()
