"""deploy/kubernetes/test-1.20 changes API versions and nothing else (issue #25).

The overlay is what ``make k8s-test`` applies to its Kubernetes 1.20 cluster; a passing test
there says something about the shipped manifests only while the two differ in exactly the HPA's
and the PDB's apiVersion and the preStop action's form (``exec: sleep`` for the same seconds).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts import k8s_manifests
from scripts.k8s_manifests import KustomizeError, render
from tests.helpers.support import ROOT

BASE = ROOT / "deploy/kubernetes/base"
OVERLAY = ROOT / "deploy/kubernetes/test-1.20"
PRESTOP = "spec.template.spec.containers.0.lifecycle.preStop"
ALLOWED = {
    ("HorizontalPodAutoscaler", "modelserve"): "apiVersion",
    ("PodDisruptionBudget", "modelserve"): "apiVersion",
    ("Deployment", "modelserve"): PRESTOP,
}


def _by_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _leaf_diffs(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _leaf_diffs(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in _leaf_diffs(x, y, f"{path}.{i}")]
    return [] if a == b else [path.lstrip(".")]


def test_overlay_differs_from_base_only_in_api_versions_and_prestop_form() -> None:
    base, overlay = _by_name(render(BASE)), _by_name(render(OVERLAY))
    assert base.keys() == overlay.keys()
    for key in base:
        diffs = _leaf_diffs(base[key], overlay[key])
        allowed = ALLOWED.get(key)
        outside = [d for d in diffs if not (allowed and (d + ".").startswith(allowed + "."))]
        assert not outside, (key, outside)
        assert bool(diffs) == bool(allowed), (key, "expected a change" if allowed else diffs)
    hpa = overlay[("HorizontalPodAutoscaler", "modelserve")]
    pdb = overlay[("PodDisruptionBudget", "modelserve")]
    assert (hpa["apiVersion"], pdb["apiVersion"]) == ("autoscaling/v2beta2", "policy/v1beta1")
    containers = [
        d["spec"]["template"]["spec"]["containers"][0]
        for d in (base[("Deployment", "modelserve")], overlay[("Deployment", "modelserve")])
    ]
    seconds = containers[0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert containers[1]["name"] == "modelserve"
    assert containers[1]["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", str(seconds)]}}


def test_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(KustomizeError, match="namePrefix"):
        render(tmp_path)
    shutil.copytree(BASE, tmp_path / "base")
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [base]\npatches:\n  - target: {kind: Deployment, name: nope}\n"
        "    patch: '[{op: remove, path: /spec}]'\n"
    )
    with pytest.raises(KustomizeError, match="matches nothing"):
        render(tmp_path)


def _real_kustomize(directory: Path) -> list[dict[str, Any]] | None:
    """``kubectl kustomize`` where the kubectl on PATH has a kustomize that reads the base."""
    if shutil.which("kubectl") is None:
        return None
    done = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        return None  # kubectl 1.20's kustomize 2.0.3 rejects `labels`: the reason for the renderer
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.mark.parametrize("directory", [BASE, OVERLAY], ids=["base", "test-1.20"])
def test_renderer_agrees_with_a_real_kustomize(directory: Path) -> None:
    real = _real_kustomize(directory)
    if real is None:
        pytest.skip("no kubectl with a kustomize that reads deploy/kubernetes/base on PATH")
    assert _by_name(k8s_manifests.render(directory)) == _by_name(real)
