"""make bench's targets say met or NOT met from the numbers of the run."""

from __future__ import annotations

from bench.models import FOREST, LOGISTIC, MIXED
from bench.servers import WrkResult
from bench.targets import targets


def _run(rps: float, p50_ms: float = 1.0, p99_ms: float = 10.0) -> WrkResult:
    return WrkResult(int(rps * 8), 8.0, 0, 0, p50_ms, p99_ms, p99_ms)


def test_issue_27_targets_follow_the_numbers() -> None:
    results = {
        ("modelserve", LOGISTIC, 64): _run(9000, p99_ms=19),
        ("baseline", LOGISTIC, 64): _run(2000),
        ("modelserve", LOGISTIC, 1): _run(2000, p50_ms=0.3),
        ("baseline", LOGISTIC, 1): _run(2000, p50_ms=0.4),
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
