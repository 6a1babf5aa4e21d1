"""The rollout's latency check: a canary fails when its p99 is both over the ratio and slower
by at least the slack, so a p99 of a millisecond moving 2x is noise and a real regression is not.
"""

from __future__ import annotations

import pytest

from app.tools.rollout import Limits, _ratio_check, queries


class Answers:
    """Prometheus as the check sees it: one value per query."""

    def __init__(self, canary_p99_s: float, production_p99_s: float) -> None:
        self.values = {
            queries("m", "2")["p99"]: canary_p99_s,
            queries("m", "1")["p99"]: production_p99_s,
        }

    def value(self, query: str) -> float | None:
        return self.values.get(query)


@pytest.mark.parametrize(
    ("canary_ms", "production_ms", "slack_ms", "ok"),
    [
        (1.4, 1.0, 5, True),  # under the ratio
        (3.0, 1.0, 5, True),  # 3x, but only 2 ms slower: noise at this scale
        (8.9, 1.7, 5, False),  # 5.2x and 7.2 ms slower
        (8.9, 1.7, 50, True),  # the same within a wider slack (seconds-long steps in tests)
        (40.0, 20.0, 5, False),  # 2x and 20 ms slower: a regression
    ],
)
def test_latency_fails_only_over_both_the_ratio_and_the_slack(
    canary_ms: float, production_ms: float, slack_ms: float, ok: bool
) -> None:
    limits = Limits(max_p99_ratio=1.5, latency_slack_s=slack_ms / 1000)
    answers = Answers(canary_ms / 1000, production_ms / 1000)
    check = _ratio_check(answers, queries("m", "2"), queries("m", "1"), limits)  # type: ignore[arg-type]
    assert check.name == "latency" and check.ok is ok, check.detail


def test_latency_waits_until_both_versions_have_a_p99() -> None:
    answers = Answers(0.002, 0.001)
    answers.values.pop(queries("m", "1")["p99"])
    check = _ratio_check(answers, queries("m", "2"), queries("m", "1"), Limits())  # type: ignore[arg-type]
    assert check.ok is None
