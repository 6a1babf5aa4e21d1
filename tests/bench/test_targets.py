"""make bench's targets say met or NOT met from the numbers of the run."""

from __future__ import annotations

from bench import before
from bench.models import FOREST, LOGISTIC, MIXED
from bench.servers import WrkResult
from bench.targets import targets


def _run(rps: float, p50_ms: float = 1.0, p99_ms: float = 10.0) -> WrkResult:
    return WrkResult(int(rps * 8), 8.0, 0, 0, p50_ms, p99_ms, p99_ms)


def _logistic(rps: float, p99_ms: float) -> dict[tuple[str, str, int], WrkResult]:
    """The logistic model's runs the targets read: modelserve's c=64 as given."""
    return {
        ("modelserve", LOGISTIC, 64): _run(rps, p99_ms=p99_ms),
        ("baseline", LOGISTIC, 64): _run(400),
        ("modelserve", LOGISTIC, 1): _run(900, p50_ms=0.3),
        ("baseline", LOGISTIC, 1): _run(400, p50_ms=0.4),
    }


def test_issue_27_targets_follow_the_numbers() -> None:
    results = {
        **_logistic(9000, p99_ms=19),
        ("modelserve", FOREST, 64): _run(5000),
        ("baseline", FOREST, 64): _run(100),
        ("modelserve", FOREST, 1): _run(2000, p50_ms=0.5),
        ("modelserve", MIXED, 64): _run(3700),
        ("baseline", MIXED, 64): _run(70),
    }
    floors = {(FOREST, 1): 1.0}
    lines = [
        line for line in targets(results, floors, None, [LOGISTIC, FOREST, MIXED]) if "#27" in line
    ]
    # logistic 9,000 >= 2 x 4,443 with p99 19 ms; forest p50 0.5 ms; forest 5,000 < 1.5 x 3,679
    assert [line.startswith("- met") for line in lines] == [True, True, False, True]
    results[("modelserve", LOGISTIC, 64)] = _run(9000, p99_ms=25)  # p99 over 20 ms
    lines = [line for line in targets(results, floors, None, [LOGISTIC]) if "#27" in line]
    assert lines[0].startswith("- NOT met") and "p99 25.0 ms" in lines[0]


def test_issue_27_targets_against_the_starting_code_of_the_same_run() -> None:
    """With the starting code's runs paired with today's, each c=64 target is also checked as
    the median of the pairs' ratios, beside the fixed number of the day the issue was filed."""
    results = {
        **_logistic(2400, p99_ms=15),
        ("modelserve", MIXED, 64): _run(1000),
        ("baseline", MIXED, 64): _run(20),
    }
    paired = {
        # ratios 2.5, 1.9, 2.1: the median 2.1; today's p99 15, 19, 30: the median 19
        LOGISTIC: [
            (_run(1000), _run(2500, p99_ms=15)),
            (_run(1000), _run(1900, p99_ms=30)),
            (_run(1000), _run(2100, p99_ms=19)),
        ],
        MIXED: [(_run(700), _run(1000)), (_run(800), _run(1100)), (_run(600), _run(1000))],
    }
    lines = [
        line for line in targets(results, {}, None, [LOGISTIC, MIXED], paired) if "#27" in line
    ]
    assert [line.startswith("- met") for line in lines] == [False, True, False, False]
    assert "in this run: 2.10× ≥ 2× (median of 3 alternating pairs), median p99 19.0" in lines[1]
    assert "in this run: 1.43× ≥ 1.5×" in lines[3]
    paired[LOGISTIC][2] = (_run(1000), _run(2100, p99_ms=25))  # the median p99 now 25 ms
    lines = [line for line in targets(results, {}, None, [LOGISTIC], paired) if "#27" in line]
    assert lines[1].startswith("- NOT met")
    table = before.report(paired, {LOGISTIC: "LR", MIXED: "Mixed"})
    assert table[4].startswith("| LR | 1,000 (1.00 / 10.0); ") and table[4].endswith("| 2.10× |")
    assert before.report({}, {}) == []
