"""Render a kustomization under deploy/kubernetes the way ``kubectl kustomize`` does.

kubectl 1.20, the one that talks to the 1.20 test cluster, bundles kustomize 2.0.3, which
rejects the base's ``labels`` field; no newer kustomize is packaged here. So the test renders
the overlay itself, with the few kustomize features deploy/kubernetes uses: ``resources``
(files and directories), ``labels`` (``pairs`` onto ``metadata.labels``, no selectors),
``images`` and ``patches`` (JSON 6902 operations on a target). Any other field is an error
rather than something silently ignored; tests/deploy/test_k8s_overlay.py compares the result
with a real kustomize where one is installed.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KNOWN = {"apiVersion", "kind", "resources", "labels", "images", "patches"}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}

Doc = dict[str, Any]


class KustomizeError(Exception):
    """The kustomization uses something this renderer does not implement."""


def render(directory: Path) -> list[Doc]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - KNOWN
    if unknown:
        raise KustomizeError(f"{directory}: unsupported kustomization fields {sorted(unknown)}")
    docs: list[Doc] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        if path.is_dir():
            docs.extend(render(path))
        else:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    for label in spec.get("labels", []):
        if set(label) - {"pairs"}:
            raise KustomizeError(f"{directory}: labels options {sorted(set(label) - {'pairs'})}")
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    for image in spec.get("images", []):
        for doc in docs:
            _set_image(doc, image)
    for patch in spec.get("patches", []):
        if set(patch) != {"target", "patch"}:
            raise KustomizeError(f"{directory}: only inline patches with a target: {patch}")
        ops = yaml.safe_load(patch["patch"])
        matched = [doc for doc in docs if _matches(doc, patch["target"])]
        if not matched:
            raise KustomizeError(f"{directory}: patch target {patch['target']} matches nothing")
        for doc in matched:
            for op in ops:
                _apply(doc, op)
    return docs


def _set_image(doc: Doc, image: dict[str, str]) -> None:
    if doc.get("kind") not in POD_TEMPLATE_KINDS:
        return
    pod = doc["spec"]["template"]["spec"]
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        name, _, tag = container["image"].partition(":")
        if name == image["name"]:
            new = image.get("newName", name)
            new_tag = image.get("newTag", tag)
            container["image"] = f"{new}:{new_tag}" if new_tag else new


def _matches(doc: Doc, target: dict[str, str]) -> bool:
    group, _, version = doc["apiVersion"].rpartition("/")
    actual = {"group": group, "version": version, "kind": doc["kind"]}
    actual["name"] = doc["metadata"]["name"]
    return all(actual.get(key) == value for key, value in target.items())


def _apply(doc: Doc, op: dict[str, Any]) -> None:
    """One JSON 6902 operation (add, replace, remove, test) on ``doc`` in place."""
    *parents, last = [
        p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")
    ]
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: int | str = int(last) if isinstance(node, list) and last != "-" else last
    kind = op["op"]
    if kind == "test":
        if node[key] != op["value"]:
            raise KustomizeError(f"test failed at {op['path']}: {node[key]!r}")
    elif kind == "remove":
        del node[key]
    elif kind == "replace":
        if key not in (range(len(node)) if isinstance(node, list) else node):
            raise KustomizeError(f"replace of a missing {op['path']}")  # RFC 6902: must exist
        node[key] = copy.deepcopy(op["value"])
    elif kind == "add":
        if isinstance(node, list):
            node.insert(len(node) if key == "-" else int(key), copy.deepcopy(op["value"]))
        else:
            node[key] = copy.deepcopy(op["value"])
    else:
        raise KustomizeError(f"unsupported patch op {kind!r}")
