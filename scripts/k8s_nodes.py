"""Two machines on one: network namespaces joined by a veth pair, a dockerd in each.

Every address lives only inside the namespaces created here (named after this process's pid,
so a second run or a leftover never collides), and goes away with them. Each node's pods get
addresses from its dockerd's bridge (``--bip``), one /24 per node; a static route in each
namespace sends the other node's pod range over the veth. Docker's FORWARD policy would drop
pod traffic arriving from the other node, so each namespace's ``DOCKER-USER`` chain accepts it.
The dockerds are started with ``nsenter --net`` (``ip netns exec`` remounts /sys, and dockerd
then finds no devices cgroup), each with its own data root, exec root and socket.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.k8s_procs import Processes, netns_cmd
from scripts.stack_test_engine import DAEMON_CONFIG, LABEL, run

NODE_NET = "10.211.0"  # node i has NODE_NET.i on the veth
POD_NET = "10.212"  # node i's pods: POD_NET.i.0/24, its bridge POD_NET.i.1
CLUSTER_CIDR = f"{POD_NET}.0.0/16"
SERVICE_CIDR = "10.213.0.0/24"
PAUSE_IMAGE = "modelserve-k8s-test/pause:1"
BUSYBOX = Path("/bin/busybox")
# The pod sandbox only holds the namespaces; it must exit on SIGTERM (PID 1 has no default).
PAUSE_CMD = 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait; done'


@dataclass(frozen=True)
class Node:
    index: int
    run_id: str
    root: Path

    @property
    def name(self) -> str:
        return f"node-{self.index}"

    @property
    def netns(self) -> str:
        return f"msk8s-{self.run_id}-{self.index}"

    @property
    def ip(self) -> str:
        return f"{NODE_NET}.{self.index}"

    @property
    def pod_cidr(self) -> str:
        return f"{POD_NET}.{self.index}.0/24"

    @property
    def dir(self) -> Path:
        return self.root / self.name

    @property
    def docker_host(self) -> str:
        return f"unix://{self.dir}/docker.sock"

    def sh(self, *cmd: str, timeout: float = 60) -> str:
        return run(*netns_cmd(self.netns, *cmd), timeout=timeout).stdout

    def docker(self, *args: str, timeout: float = 300) -> str:
        return run("docker", "-H", self.docker_host, *args, timeout=timeout).stdout


class Network:
    """The namespaces, the veth pair and the routes; ``destroy`` removes what ``create`` made."""

    def __init__(self, nodes: tuple[Node, Node]) -> None:
        self.nodes = nodes
        self.made: list[str] = []

    def create(self) -> str:
        a, b = self.nodes
        for node in self.nodes:
            run("ip", "netns", "add", node.netns)
            self.made.append(node.netns)
        veth = (f"msk{a.run_id}a", f"msk{a.run_id}b")
        run("ip", "link", "add", veth[0], "netns", a.netns, "type", "veth",
            "peer", "name", veth[1], "netns", b.netns)  # fmt: skip
        for node, other, dev in ((a, b, veth[0]), (b, a, veth[1])):
            node.sh("ip", "link", "set", "lo", "up")
            node.sh("ip", "addr", "add", f"{node.ip}/24", "dev", dev)
            node.sh("ip", "link", "set", dev, "up")
            node.sh("ip", "route", "add", other.pod_cidr, "via", other.ip)
            # A ClusterIP needs a route for the connect() to get as far as kube-proxy's DNAT.
            node.sh("ip", "route", "add", SERVICE_CIDR, "dev", dev)
            node.sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
        return f"namespaces {a.netns}, {b.netns}; veth {a.ip} <-> {b.ip}"

    def allow_forwarding(self) -> None:
        """After each dockerd made its chains: pods reachable from the other node."""
        for node in self.nodes:
            node.sh("iptables", "-I", "DOCKER-USER", "-j", "ACCEPT")

    def destroy(self) -> list[str]:
        gone = []
        for netns in reversed(self.made):
            proc = run("ip", "netns", "delete", netns, check=False)
            gone.append(netns if proc.returncode == 0 else f"{netns}: {proc.stderr.strip()}")
        self.made.clear()
        return gone


def start_dockerd(node: Node, procs: Processes, timeout: float = 60) -> str:
    node.dir.mkdir(parents=True, exist_ok=True)
    config = node.dir / "daemon.json"
    config.write_text(
        json.dumps({**DAEMON_CONFIG, "bip": f"{POD_NET}.{node.index}.1/24", "shutdown-timeout": 5})
    )
    procs.start(
        f"dockerd-{node.name}",
        [
            "dockerd",
            f"--config-file={config}",
            f"--host={node.docker_host}",
            f"--data-root={node.dir / 'docker'}",
            f"--exec-root={node.dir / 'exec'}",
            f"--pidfile={node.dir / 'dockerd.pid'}",
            f"--containerd-namespace={node.netns}",
            f"--containerd-plugins-namespace={node.netns}-plugins",
        ],
        netns=node.netns,
        # Debian's dockerd: no registry lookup for an image it has (~64 s each otherwise).
        env={"DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"},
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check_alive()
        probe = ["docker", "-H", node.docker_host, "version", "--format", "{{.Server.Version}}"]
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
        if done.returncode == 0:
            return f"{node.name}: dockerd {done.stdout.strip()} on {node.docker_host}"
        time.sleep(0.5)
    raise RuntimeError(f"dockerd of {node.name} did not answer within {timeout:.0f} s")


def pause_tar() -> bytes:
    """A root filesystem holding only Debian's static busybox (package busybox-static)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(BUSYBOX.resolve()), arcname="bin/busybox")
        for applet in ("sh", "sleep"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buf.getvalue()


def load_images(nodes: tuple[Node, ...], image: str, tags: tuple[str, ...]) -> list[str]:
    """The pause stand-in imported, and ``image`` (from the host engine) loaded, in each node."""
    if not BUSYBOX.exists():
        raise RuntimeError(f"{BUSYBOX} missing (apt package busybox-static)")
    done = []
    tar = pause_tar()
    saved = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    assert saved.stdout is not None
    archive = saved.stdout.read()
    if saved.wait(60) != 0:
        raise RuntimeError(f"docker save {image} failed")
    for node in nodes:
        start = time.monotonic()
        changes = [f'ENTRYPOINT ["/bin/sh", "-c", {json.dumps(PAUSE_CMD)}]', f"LABEL {LABEL}=1"]
        subprocess.run(
            ["docker", "-H", node.docker_host, "import",
             *(f"--change={c}" for c in changes), "-", PAUSE_IMAGE],
            input=tar, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        subprocess.run(
            ["docker", "-H", node.docker_host, "load"],
            input=archive, check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        for tag in tags:
            node.docker("tag", image, tag)
        size = f"{len(archive) / 1e6:.0f} MB"
        done.append(
            f"{node.name}: {PAUSE_IMAGE}, {image} ({size}) as {', '.join(tags)} "
            f"in {time.monotonic() - start:.0f} s"
        )
    return done


def remove_tree(root: Path) -> None:
    """Unmount whatever is still mounted under ``root`` (deepest first), then delete it."""
    prefix = str(root.resolve()) + "/"
    mounts = [
        line.split()[1].encode().decode("unicode_escape")
        for line in Path("/proc/self/mounts").read_text().splitlines()
    ]
    for point in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    shutil.rmtree(root, ignore_errors=True)
