"""A two-node Kubernetes 1.20 cluster on this machine, for ``make k8s-test``, and its teardown.

etcd and the control plane run in node 1's network namespace, a kubelet (dockershim, its own
dockerd) and a kube-proxy (iptables) in each node's (scripts/k8s_nodes.py). It is a test
cluster: one static token in ``system:masters`` for kubectl and every component, TLS not
verified inside it, the kubelets' API anonymous with AlwaysAllow. Each kubelet has its own root
directory, dockershim socket and checkpoint directory, so two run side by side.

Teardown removes only what was started: the processes by pid, the namespaces by name (their
addresses and iptables rules go with them), the mounts and files under the run's directory,
the pod logs under /var/log of the namespaces applied to, and the kernel settings the kubelet
changes on the host (vm.overcommit_memory and its like), which are put back.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from scripts import k8s_nodes
from scripts.k8s_nodes import Network, Node
from scripts.k8s_procs import Processes, netns_cmd
from scripts.stack_test_engine import run, wait_until

API_PORT = 6443
ENDPOINTS_BATCH_S = 3
# What kubelet sets on the host at start (pkg/kubelet/cm: setupKernelTunables): restored after.
KERNEL_TUNABLES = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
POD_LOGS = (Path("/var/log/pods"), Path("/var/log/containers"))


class NoClusterError(Exception):
    """The cluster cannot start on this machine; the message says why."""


class Cluster:
    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="modelserve-k8s-", dir="/var/tmp"))
        # PostgreSQL (its own user) and the pods (uid 10001, the shared registry) look inside.
        self.root.chmod(0o755)
        run_id = str(os.getpid())
        self.nodes = (Node(1, run_id, self.root), Node(2, run_id, self.root))
        self.network = Network(self.nodes)
        self.procs = Processes(self.root / "logs")
        self.token = secrets.token_hex(16)
        self.kubeconfig = self.root / "admin.kubeconfig"
        self.tunables = {t: Path("/proc/sys", t).read_text() for t in KERNEL_TUNABLES}
        self.namespaces: set[str] = set()
        self.logs_before = {p: set(os.listdir(p)) if p.is_dir() else set() for p in POD_LOGS}

    @property
    def api_node(self) -> Node:
        return self.nodes[0]

    # --- use ---------------------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
        """kubectl 1.20 (a newer one sends the HPA through autoscaling/v1) in node 1's netns."""
        cmd = netns_cmd(
            self.api_node.netns, str(self.bin / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args
        )
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def in_node(self, node: Node, *cmd: str, timeout: float = 120) -> str:
        return run(*netns_cmd(node.netns, *cmd), timeout=timeout).stdout

    # --- start -------------------------------------------------------------------------------

    def start_network(self) -> list[str]:
        for tool in ("ip", "nsenter", "iptables", "dockerd", "etcd", "openssl"):
            if run("sh", "-c", f"command -v {tool}", check=False).returncode != 0:
                raise NoClusterError(f"{tool} not found")
        if os.geteuid() != 0:
            raise NoClusterError("not root: network namespaces and dockerd need root")
        try:
            made = self.network.create()
        except RuntimeError as exc:
            raise NoClusterError(f"cannot create network namespaces: {exc}") from exc
        return [made]

    def start_engines(self) -> list[str]:
        try:
            done = [k8s_nodes.start_dockerd(node, self.procs) for node in self.nodes]
        except RuntimeError as exc:
            raise NoClusterError(f"a node's dockerd cannot start: {exc}") from exc
        self.network.allow_forwarding()
        return done

    def _pki(self) -> None:
        pki = self.root / "pki"
        pki.mkdir()
        run("openssl", "genrsa", "-out", str(pki / "sa.key"), "2048")
        run("openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
        (pki / "tokens.csv").write_text(f'{self.token},admin,admin,"system:masters"\n')
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "test",
                            "cluster": {
                                "server": f"https://{self.api_node.ip}:{API_PORT}",
                                "insecure-skip-tls-verify": True,
                            },
                        }
                    ],
                    "users": [{"name": "admin", "user": {"token": self.token}}],
                    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
                    "current-context": "test",
                }
            )
        )

    def start_control_plane(self) -> list[str]:
        self._pki()
        pki, ns = self.root / "pki", self.api_node.netns
        etcd = self.root / "etcd"
        self.procs.start(
            "etcd",
            ["etcd", "--data-dir", str(etcd), "--listen-client-urls", "http://127.0.0.1:2379",
             "--advertise-client-urls", "http://127.0.0.1:2379",
             "--listen-peer-urls", "http://127.0.0.1:2380"],
            netns=ns,
        )  # fmt: skip
        start = time.monotonic()
        self.procs.start(
            "kube-apiserver",
            [
                str(self.bin / "kube-apiserver"),
                "--etcd-servers=http://127.0.0.1:2379",
                f"--secure-port={API_PORT}",
                "--insecure-port=0",
                f"--advertise-address={self.api_node.ip}",
                f"--cert-dir={pki}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={k8s_nodes.SERVICE_CIDR}",
                "--kubelet-preferred-address-types=InternalIP",
                "--allow-privileged=true",
                # The custom metrics API stand-in is reached at its endpoint, not its ClusterIP.
                "--enable-aggregator-routing=true",
            ],
            netns=ns,
        )

        def api_ready() -> bool:
            self.procs.check_alive()
            try:
                return self.kubectl("get", "--raw", "/readyz", timeout=10).strip() == "ok"
            except RuntimeError:  # refused until it listens
                return False

        wait_until("kube-apiserver /readyz", api_ready, 90, every=1)
        api_s = time.monotonic() - start
        kube = f"--kubeconfig={self.kubeconfig}"
        self.procs.start(
            "kube-controller-manager",
            [
                str(self.bin / "kube-controller-manager"),
                kube,
                "--leader-elect=false",
                "--controllers=*",
                "--use-service-account-credentials=false",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'apiserver.crt'}",
                "--horizontal-pod-autoscaler-sync-period=5s",
                # A pod's leaving reaches kube-proxy up to this late, as on a large cluster
                # (where these are set to spare the API server, and propagation takes seconds);
                # on two idle nodes it is milliseconds, and no test could see what a preStop
                # wait is for.
                f"--endpoint-updates-batch-period={ENDPOINTS_BATCH_S}s",
                f"--endpointslice-updates-batch-period={ENDPOINTS_BATCH_S}s",
                "--bind-address=127.0.0.1",
            ],
            netns=ns,
        )
        self.procs.start(
            "kube-scheduler",
            [str(self.bin / "kube-scheduler"), kube, "--leader-elect=false",
             "--bind-address=127.0.0.1"],
            netns=ns,
        )  # fmt: skip
        return [f"etcd, kube-apiserver (ready in {api_s:.1f} s), controller-manager, scheduler"]

    def start_nodes(self) -> list[str]:
        start = time.monotonic()
        for node in self.nodes:
            self._start_kubelet(node)
            self.procs.start(
                f"kube-proxy-{node.name}",
                [
                    str(self.bin / "kube-proxy"),
                    f"--kubeconfig={self.kubeconfig}",
                    "--proxy-mode=iptables",
                    f"--cluster-cidr={k8s_nodes.CLUSTER_CIDR}",
                    f"--hostname-override={node.name}",
                    "--conntrack-max-per-core=0",
                    "--conntrack-tcp-timeout-established=0",
                    "--conntrack-tcp-timeout-close-wait=0",
                    "--oom-score-adj=0",
                    "--healthz-bind-address=127.0.0.1:10256",
                    "--metrics-bind-address=127.0.0.1:10249",
                ],
                netns=node.netns,
            )

        def ready() -> list[str]:
            self.procs.check_alive()
            names = []
            for item in self.get("nodes")["items"]:
                conditions = {c["type"]: c["status"] for c in item["status"]["conditions"]}
                if conditions.get("Ready") == "True":
                    names.append(item["metadata"]["name"])
            return names if len(names) == len(self.nodes) else []

        names = wait_until("both nodes Ready", ready, 120, every=2)
        return [f"{', '.join(sorted(names))} Ready in {time.monotonic() - start:.0f} s"]

    def _start_kubelet(self, node: Node) -> None:
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": node.ip,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "evictionHard": {},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
        }
        path = node.dir / "kubelet.yaml"
        path.write_text(yaml.safe_dump(config))
        endpoint = f"unix://{node.dir}/dockershim.sock"
        self.procs.start(
            f"kubelet-{node.name}",
            [
                str(self.bin / "kubelet"),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={path}",
                "--container-runtime=docker",
                f"--docker-endpoint={node.docker_host}",
                f"--container-runtime-endpoint={endpoint}",
                f"--image-service-endpoint={endpoint}",
                f"--experimental-dockershim-root-directory={node.dir / 'dockershim'}",
                f"--pod-infra-container-image={k8s_nodes.PAUSE_IMAGE}",
                f"--hostname-override={node.name}",
                f"--node-ip={node.ip}",
                f"--root-dir={node.dir / 'kubelet'}",
                f"--cert-dir={node.dir / 'kubelet-pki'}",
                "--oom-score-adj=0",
            ],
            netns=node.netns,
        )

    # --- teardown ----------------------------------------------------------------------------

    def teardown(self) -> list[str]:
        done = [f"stopped {', '.join(self.procs.stop_all())}"]
        done.append(f"removed namespaces {', '.join(self.network.destroy())}")
        k8s_nodes.remove_tree(self.root)
        for tunable, value in self.tunables.items():
            path = Path("/proc/sys", tunable)
            if path.read_text() != value:
                path.write_text(value)
        for directory in POD_LOGS:
            if not directory.is_dir():
                continue
            for name in set(os.listdir(directory)) - self.logs_before[directory]:
                if any(f"_{ns}_" in f"_{name}" for ns in self.namespaces):
                    entry = directory / name
                    if entry.is_symlink() or entry.is_file():
                        entry.unlink()
                    else:
                        run("rm", "-rf", "--one-file-system", str(entry), check=False)
        done.append(f"removed {self.root}, pod logs of {sorted(self.namespaces)}; "
                    "kernel settings restored")  # fmt: skip
        return done
