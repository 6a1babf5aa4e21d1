"""The canary split: stable per key, uniform over keys, monotone in the weight."""

from __future__ import annotations

import subprocess
import sys

from app.serving.routing import point, to_canary


def test_points_are_uniform_over_keys() -> None:
    points = [point(f"user-{i}") for i in range(20_000)]
    assert all(0 <= p < 1 for p in points)
    for share in (0.05, 0.1, 0.5):
        hit = sum(p < share for p in points) / len(points)
        assert abs(hit - share) < 0.01, (share, hit)


def test_a_key_lands_alike_in_every_process() -> None:
    """No per-process hash seed: another interpreter gives the same point."""
    code = "from app.serving.routing import point; print(repr(point('customer-42')))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(other.stdout) == point("customer-42")


def test_raising_the_weight_only_moves_keys_to_the_canary() -> None:
    keys = [f"k{i}" for i in range(5_000)]
    at_10 = {k for k in keys if to_canary(k, 0.10)}
    at_25 = {k for k in keys if to_canary(k, 0.25)}
    assert at_10 <= at_25
    assert not any(to_canary(k, 0.0) for k in keys)
    assert all(to_canary(k, 1.0) for k in keys)
