"""The shipped Kubernetes manifests on a real two-node cluster (issue #25).

Not part of ``make test`` (``.ci/run`` runs it beside the stack test): it needs root, apt, a
cluster build (cached after the first, about 5 min on 2 cores) and about 8 minutes;
``make k8s-test`` sets ``MODELSERVE_K8S_TEST=1`` and runs only this file. ``scripts/k8s_test.py``
does the work and prints each phase with its duration and what it measured; a skip (no cluster
can start here) names the reason.
"""

from __future__ import annotations

import os

import pytest

from tests.helpers.streamed import run_driver

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.skipif(os.environ.get("MODELSERVE_K8S_TEST") != "1", reason="run by make k8s-test"),
]


def test_the_shipped_manifests_on_a_two_node_cluster() -> None:
    run_driver("scripts.k8s_test", "k8s-test")
