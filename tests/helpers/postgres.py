"""A real PostgreSQL for the tests: the one CI started, or a throwaway cluster of our own.

``MODELSERVE_TEST_DATABASE_URL`` (exported by ``.ci/run``) names a server whose role may
``CREATE DATABASE``. Without it, when Debian's (or any) PostgreSQL binaries are installed, a
throwaway cluster is initialised in a temporary directory, listening on a free loopback port
(run as the ``postgres`` user when the tests run as root, since the server refuses root).
Every test gets its own fresh database, dropped afterwards.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg import conninfo, sql

from tests.helpers.support import free_port

ENV_URL = "MODELSERVE_TEST_DATABASE_URL"


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl live: Debian's versioned directory (newest), else the PATH."""
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


class ThrowawayPostgres:
    """``initdb`` + ``pg_ctl start`` in a temp dir; ``stop()`` removes every trace."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="modelserve-pg-"))
        self.datadir = self.root / "data"
        self.port = 0
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")  # KeyError: no postgres user to run it as
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, timeout=120, check=False
        )

    def start(self) -> ThrowawayPostgres:
        init = self._run(
            str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
            "--auth=trust", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}{init.stderr}")
        last = ""
        for _ in range(3):  # the free port may be taken between asking and binding
            self.port = free_port()
            options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
            started = self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l",
                str(self.root / "server.log"), "-w", "-t", "60", "-o", options, "start",
            )  # fmt: skip
            if started.returncode == 0:
                return self
            last = started.stdout + started.stderr + self.server_log()
        self.stop()
        raise RuntimeError(f"PostgreSQL did not start:\n{last}")

    def server_log(self) -> str:
        log = self.root / "server.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate",
                      "-w", "stop")  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def admin_url() -> Iterator[str | None]:
    """A server URL allowed to create databases, or None when PostgreSQL is not installed."""
    url = os.environ.get(ENV_URL)
    if url:
        yield url
        return
    bindir = find_bindir()
    if bindir is None:
        yield None
        return
    server = ThrowawayPostgres(bindir).start()
    try:
        yield server.url
    finally:
        server.stop()


def with_dbname(url: str, dbname: str) -> str:
    params = conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    user = str(params.pop("user", ""))
    password = str(params.pop("password", ""))
    host, port = params.pop("host", "127.0.0.1"), params.pop("port", "5432")
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    auth += "@" if auth else ""
    query = urlencode({k: v for k, v in params.items() if k != "dbname"})
    return f"postgresql://{auth}{host}:{port}/{dbname}" + (f"?{query}" if query else "")


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new empty database on the server for one test; dropped (connections and all) after."""
    name = f"modelserve_test_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_dbname(server_url, name)
    finally:
        _drop(server_url, name)


def _drop(server_url: str, name: str) -> None:
    # FORCE ends this role's sessions, but not an autovacuum worker (the superuser's) that
    # happens to be in the database: it is refused until that worker is done, seconds at most.
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            return
        except psycopg.errors.InsufficientPrivilege:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
