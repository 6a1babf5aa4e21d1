"""Validate every manifest under deploy/kubernetes (``make check-k8s``).

* Generated files must match their sources (``scripts/gen_k8s.py --check``).
* Every built-in kind passes ``kubernetes-validate --strict`` against the Kubernetes OpenAPI
  schema (unexpected fields are errors).
* Prometheus Operator kinds have no schema in kubernetes-validate, and their CRDs cannot be
  fetched here; so each ``PrometheusRule``'s ``spec`` goes through ``promtool check rules``
  (the check Prometheus itself applies) and the ServiceMonitor is checked against the
  Service by tests/deploy/test_k8s.py. Any other kind without a schema is an error.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts import gen_k8s  # noqa: E402

K8S_DIR = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"  # oldest release with the native preStop `sleep` action we use
OPERATOR_KINDS = {"PrometheusRule", "ServiceMonitor", "PodMonitor"}


def manifests() -> list[Path]:
    return sorted(p for p in K8S_DIR.rglob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def check_rules(doc: dict[str, Any], where: str) -> list[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        return [f"{where}: promtool not found (apt package 'prometheus')"]
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as fh:
        yaml.safe_dump(doc["spec"], fh)
        fh.flush()
        run = subprocess.run(
            [promtool, "check", "rules", fh.name], capture_output=True, text=True, check=False
        )
    if run.returncode != 0:
        return [f"{where}: promtool check rules failed:\n{run.stdout}{run.stderr}"]
    return []


def check_file(path: Path) -> list[str]:
    errors: list[str] = []
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    for doc in documents(path):
        kind = doc.get("kind", "?")
        where = f"{rel} {kind}/{doc.get('metadata', {}).get('name', '?')}"
        for version in (K8S_VERSION, kubernetes_validate.latest_version()):
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                if kind not in OPERATOR_KINDS:
                    errors.append(f"{where}: no schema for {doc.get('apiVersion')} {kind}")
                break
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{where} (Kubernetes {version}): {exc.message} at {exc.path}")
        if kind == "PrometheusRule":
            errors.extend(check_rules(doc, where))
    return errors


def main() -> int:
    errors: list[str] = []
    if gen_k8s.main(["--check"]) != 0:
        errors.append("generated manifests are stale")
    files = manifests()
    for path in files:
        errors.extend(check_file(path))
    for error in errors:
        print(f"FAIL {error}", file=sys.stderr)
    if not errors:
        print(f"ok: {len(files)} manifest files valid (strict) under {K8S_DIR.relative_to(ROOT)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
