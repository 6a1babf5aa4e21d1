"""Raw-socket clients for hostile-payload tests: what httpx will not send on purpose."""

from __future__ import annotations

import socket
import time
from pathlib import Path

MB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _connect(port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_status(sock: socket.socket) -> tuple[int, bytes]:
    """Status code and raw bytes of the response; 0 when the server closed without one."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        # Take the rest of a small JSON body when it is already there.
        sock.settimeout(0.5)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    if not data.startswith(b"HTTP/1.1 "):
        return 0, data
    return int(data[9:12]), data


def send_streaming(
    port: int, path: str, total: int, *, chunked: bool, timeout: float = 60.0
) -> tuple[int, bytes, int]:
    """Stream ``total`` bytes of JSON-ish body; stop when the server answers or hangs up.

    Returns the status, the raw response and how many body bytes were sent.
    """
    sock = _connect(port, timeout)
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{length}\r\n\r\n"
    )
    sent = 0
    block = b"[" + b" " * (MB - 1)
    with sock:
        sock.sendall(head.encode())
        try:
            while sent < total:
                part = block[: min(MB, total - sent)]
                sock.sendall(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part)
                sent += len(part)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused and closed: what we want; read its answer
        status, raw = read_status(sock)
    return status, raw, sent


def connected(port: int, timeout: float = 60.0) -> socket.socket:
    return _connect(port, timeout)


def trickle(
    port: int, request: bytes, *, interval: float, limit_s: float
) -> tuple[int, bytes, float]:
    """Send ``request`` one byte per ``interval`` s until the server answers or ``limit_s``.

    Returns the status (0: no answer), the raw response and the seconds it took.
    """
    with _connect(port, limit_s) as sock:
        return trickle_on(sock, request, interval=interval, limit_s=limit_s)


def trickle_on(
    sock: socket.socket, request: bytes, *, interval: float, limit_s: float
) -> tuple[int, bytes, float]:
    """``trickle`` on an open socket (after sending, e.g., complete headers)."""
    start = time.monotonic()
    sock.setblocking(False)
    for i in range(len(request)):
        if time.monotonic() - start > limit_s:
            break
        try:
            if sock.recv(1, socket.MSG_PEEK):
                break  # the server answered mid-request
        except BlockingIOError:
            pass
        except ConnectionResetError:
            break
        try:
            sock.send(request[i : i + 1])
        except (BrokenPipeError, ConnectionResetError):
            break
        time.sleep(interval)
    sock.setblocking(True)
    sock.settimeout(max(1.0, limit_s - (time.monotonic() - start)))
    status, raw = read_status(sock)
    return status, raw, time.monotonic() - start
