"""The shared prediction log of the ``make k8s-test`` pods: a private PostgreSQL in node 1.

Debian's PostgreSQL (the package the CI machine already has for tests/monitoring), a cluster
initialised in the run's directory and started inside node 1's network namespace on node 1's
address, so the pods of both nodes reach it as they would a database outside the cluster. The
pods get its URL through the manifests' Secret ``modelserve-database``. It is stopped with
SIGINT (PostgreSQL's fast shutdown: pods may still hold connections) and deleted with the run.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import time
from pathlib import Path

from scripts.k8s_nodes import CLUSTER_CIDR, NODE_NET, Node
from scripts.k8s_procs import Processes
from scripts.stack_test_engine import run

PORT = 5432
ROLE = DB = "modelserve"


def bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not found:
        raise RuntimeError("no PostgreSQL under /usr/lib/postgresql (apt package postgresql)")
    return found[-1]


def as_postgres(*cmd: str) -> list[str]:
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *cmd]


def start(node: Node, root: Path, procs: Processes) -> str:
    """Start it; the URL the pods use."""
    binaries, data, sockets = bindir(), root / "postgres", root / "pg-sockets"
    for directory in (data, sockets):
        directory.mkdir(parents=True)
        shutil.chown(directory, "postgres", "postgres")
    run(*as_postgres(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
        "--auth-local=trust", "--auth-host=scram-sha-256"), timeout=120)  # fmt: skip
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write(f"host all all {NODE_NET}.0/24 scram-sha-256\n")
        hba.write(f"host all all {CLUSTER_CIDR} scram-sha-256\n")
    procs.start(
        "postgres",
        as_postgres(str(binaries / "postgres"), "-D", str(data), "-p", str(PORT), "-k",
                     str(sockets), "-c", f"listen_addresses={node.ip}"),
        netns=node.netns,
        stop_signal=signal.SIGINT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while run("pg_isready", "-q", "-h", str(sockets), "-p", str(PORT), check=False).returncode:
        procs.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError("PostgreSQL did not accept connections within 30 s")
        time.sleep(0.3)
    password = secrets.token_hex(12)
    psql = [str(binaries / "psql"), "-h", str(sockets), "-p", str(PORT), "-U", "postgres",
            "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qtA", "-c"]  # fmt: skip
    run(*as_postgres(*psql, f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'"))
    run(*as_postgres(*psql, f"CREATE DATABASE {DB} OWNER {ROLE}"))
    return f"postgresql://{ROLE}:{password}@{node.ip}:{PORT}/{DB}"
