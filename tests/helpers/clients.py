"""Many concurrent HTTP clients over keep-alive connections, each taking the next job."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")
# What a job may meet: the connection failing, or an answer that does not parse.
FAILURES = (OSError, http.client.HTTPException, ValueError, KeyError, TypeError)


class KeepAlive:
    """One client: a keep-alive HTTP/1.1 connection (stdlib, so 16 of them cost little CPU
    and the server, not the client, is what limits the rate)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, body: bytes) -> tuple[int, str]:
        headers = {"Content-Type": "application/json"}
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, body, headers)
                response = self.conn.getresponse()
                return response.status, response.read().decode()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()  # the server closed an idle keep-alive connection
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def run_jobs(
    port: int,
    jobs: Sequence[Job],
    clients: int,
    work: Callable[[KeepAlive, Job], Result],
) -> list[Result | Exception]:
    """Each job done by one of ``clients`` threads, each with its own connection, in order of
    the list; per job its result or the exception it met."""
    results: list[Result | Exception | None] = [None] * len(jobs)
    pending = iter(enumerate(jobs))
    lock = threading.Lock()

    def client() -> None:
        connection = KeepAlive(port)
        while True:
            with lock:
                item = next(pending, None)
            if item is None:
                break
            i, job = item
            try:
                results[i] = work(connection, job)
            except FAILURES as exc:
                results[i] = exc
        connection.conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = [r for r in results if r is not None]
    assert len(done) == len(jobs), "every job gives a result"
    return done
