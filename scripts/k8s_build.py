"""The Kubernetes 1.20 binaries for ``make k8s-test``, built once from Debian 12's source package.

No registry serves Kubernetes server binaries here, but Debian 12's ``kubernetes`` source
package (1.20.2, every Go dependency vendored) builds them with Debian's Go 1.19 after two
patches (shared/k8s-notes.md):

* Go 1.19 crashes the API server on its first apply inside the vendored ``modern-go/reflect2``
  1.0.1 and ``json-iterator`` 1.1.10: Debian's -dev packages' newer copies replace them.
* Without CAP_SYS_RESOURCE runc cannot set a negative ``oom_score_adj``: the kubelet's
  ``defaultSandboxOOMAdj`` and ``guaranteedOOMScoreAdj`` become 0.

The binaries (and kubectl 1.20 from the same version's ``kubernetes-client``: a newer kubectl
sends the HPA through autoscaling/v1) land in ``~/.cache/modelserve/k8s-<version>/bin``, keyed
by the source package version. The build happens in a sibling directory renamed into place only
when complete, so an interrupted build never looks done. Run: ``python -m scripts.k8s_build``.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(os.environ.get("MODELSERVE_K8S_CACHE", Path.home() / ".cache/modelserve"))
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
APT_PACKAGES = (
    "golang-go",
    "etcd-server",
    "jq",
    "rsync",
    "conntrack",
    "busybox-static",
    "dpkg-dev",
    "golang-github-modern-go-reflect2-dev",
    "golang-github-json-iterator-go-dev",
    # what make k8s-test runs beside the cluster: its Prometheus, load and prediction log
    "prometheus",
    "wrk",
    "postgresql",
    "iproute2",
    "iptables",
    "openssl",
)
GOCODE = Path("/usr/share/gocode/src")
VENDORED = ("github.com/modern-go/reflect2", "github.com/json-iterator/go")
# file, the line as shipped, the line we need (runc cannot lower oom_score_adj here)
OOM_PATCHES = (
    (
        "pkg/kubelet/dockershim/docker_sandbox.go",
        "defaultSandboxOOMAdj int = -998",
        "defaultSandboxOOMAdj int = 0",
    ),
    (
        "pkg/kubelet/qos/policy.go",
        "guaranteedOOMScoreAdj int = -997",
        "guaranteedOOMScoreAdj int = 0",
    ),
)
DEB_SRC = Path("/etc/apt/sources.list.d/modelserve-deb-src.sources")
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def sh(*cmd: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env or APT_ENV, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {tail}")
    return proc.stdout


def candidate_version() -> str:
    """The version of Debian's kubernetes packages apt would install: the cache key."""
    out = sh("apt-cache", "policy", "kubernetes-client")
    version = next(
        (line.split()[1] for line in out.splitlines() if line.strip().startswith("Candidate:")),
        "(none)",
    )
    if "1.20.2" not in version:
        raise RuntimeError(
            f"kubernetes-client candidate is {version!r}: the patches here are for Debian 12's "
            "1.20.2 (bookworm)"
        )
    return version


def cached_bin(version: str) -> Path:
    return CACHE / f"k8s-{version}" / "bin"


def ensure_deb_src() -> bool:
    """A deb-src line for every deb source of debian.sources; True if one had to be added."""
    if subprocess.run(
        ["apt-cache", "showsrc", "kubernetes"], capture_output=True, text=True
    ).stdout.strip():
        return False
    stanzas = Path("/etc/apt/sources.list.d/debian.sources").read_text().split("\n\n")
    src = [s.replace("Types: deb", "Types: deb-src", 1) for s in stanzas if "Types: deb" in s]
    if not src:
        raise RuntimeError("no deb source in /etc/apt/sources.list.d/debian.sources to mirror")
    DEB_SRC.write_text("\n\n".join(s.strip() for s in src) + "\n")
    return True


def install_packages() -> str:
    missing = [
        pkg
        for pkg in APT_PACKAGES
        if "install ok installed"
        not in subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True
        ).stdout
    ]
    added = ensure_deb_src()
    if missing or added:
        sh("apt-get", "update", "-qq")
    if missing:
        sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing)
    return f"installed {' '.join(missing)}" if missing else "apt packages present"


def fetch_source(version: str, work: Path) -> Path:
    """``apt-get source`` unpacked (Debian's own patches applied) into ``work``."""
    sh("apt-get", "source", "--download-only", f"kubernetes={version}", cwd=work)
    (dsc,) = work.glob("kubernetes_*.dsc")
    sh("dpkg-source", "--no-check", "-x", dsc.name, "src", cwd=work)
    return work / "src"


def patch(tree: Path) -> None:
    for package in VENDORED:
        vendored, debian = tree / "vendor" / package, GOCODE / package
        if not vendored.is_dir() or not debian.is_dir():
            raise RuntimeError(f"expected both {vendored} and {debian}")
        shutil.rmtree(vendored)
        shutil.copytree(debian, vendored, symlinks=False)
        for path in [
            *vendored.rglob("*_test.go"),
            *vendored.rglob("go.mod"),
            *vendored.rglob("go.sum"),
        ]:
            path.unlink()
    for name, shipped, wanted in OOM_PATCHES:
        path = tree / name
        text = path.read_text()
        if text.count(shipped) != 1:
            raise RuntimeError(f"{name}: expected one {shipped!r}")
        path.write_text(text.replace(shipped, wanted))


def compile_binaries(tree: Path, work: Path, jobs: int) -> None:
    env = {
        **os.environ,
        "GOMAXPROCS": str(jobs),
        "GOFLAGS": f"-p={jobs}",
        "CGO_ENABLED": "0",
        "GOPROXY": "off",
        "GOCACHE": str(work / "gocache"),
        "GOPATH": str(work / "gopath"),
        "KUBE_VERBOSE": "0",
    }
    what = " ".join(f"cmd/{name}" for name in BINARIES)
    with (work / "make.log").open("w") as log:
        proc = subprocess.run(
            ["make", f"WHAT={what}"], cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    if proc.returncode != 0:
        tail = (work / "make.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"make WHAT={what} exited {proc.returncode}:\n{tail}")


def kubectl_of(version: str, work: Path, into: Path) -> None:
    """kubectl 1.20 from the .deb, unpacked: installing it could clash with another kubectl."""
    sh("apt-get", "download", f"kubernetes-client={version}", cwd=work)
    (deb,) = work.glob("kubernetes-client_*.deb")
    sh("dpkg-deb", "-x", str(deb), str(work / "client"))
    shutil.copy2(work / "client/usr/bin/kubectl", into / "kubectl")


def build(version: str, jobs: int) -> str:
    final = cached_bin(version).parent
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"k8s-{version}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second build waits, then finds the first's result
        if final.is_dir():
            return f"cached in {final}"
        start = time.monotonic()
        work = CACHE / f"k8s-{version}.build-{os.getpid()}"
        staged = CACHE / f"k8s-{version}.partial-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(staged, ignore_errors=True)
        work.mkdir()
        (staged / "bin").mkdir(parents=True)
        try:
            tree = fetch_source(version, work)
            patch(tree)
            compile_binaries(tree, work, jobs)
            out = tree / "_output/local/bin/linux/amd64"
            for name in BINARIES:
                shutil.copy2(out / name, staged / "bin" / name)
            kubectl_of(version, work, staged / "bin")
            seconds = time.monotonic() - start
            (staged / "BUILD").write_text(f"{version} built in {seconds:.0f} s with {jobs} jobs\n")
            staged.rename(final)  # the only step that makes the cache look done
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(staged, ignore_errors=True)
        return f"built {', '.join(BINARIES)} into {final} in {seconds:.0f} s ({jobs} jobs)"


def ensure(jobs: int | None = None) -> Path:
    """The cached bin directory, building it first if needed; progress on stdout."""
    print(f"k8s-build: {install_packages()}", flush=True)
    version = candidate_version()
    print(f"k8s-build: {build(version, jobs or os.cpu_count() or 1)}", flush=True)
    return cached_bin(version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=None, help="Go build parallelism")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("k8s-build: needs root (apt-get)", file=sys.stderr)
        return 1
    print(ensure(args.jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
