"""The interoperability suite can say no (issue #24, acceptance 2).

Each client's part of the suite runs twice more through ``tests/helpers/bitflip.BitFlipProxy``
in front of the same server: once passing everything through (the suite must still pass, and
the proxy counts the inference answers), then flipping one bit of one of those answers, picked
at random: the client's report must then fail the suite's check (or the client itself must
fail on the answer). Either way the suite has said no to a server that is off by one bit once.
"""

from __future__ import annotations

import random
from pathlib import Path
from types import ModuleType

import pytest

from tests.e2e.interop import test_kserve, test_mlflow, test_mlserver, test_tritonclient
from tests.helpers.bitflip import BitFlipProxy
from tests.helpers.interop import Served

pytestmark = pytest.mark.e2e
SUITES = {
    "tritonclient": test_tritonclient,
    "kserve": test_kserve,
    "mlserver": test_mlserver,
    "mlflow": test_mlflow,
}


@pytest.mark.parametrize("client", list(SUITES))
def test_one_flipped_bit_in_one_answer_fails_the_suite(
    served: Served, client: str, tmp_path: Path
) -> None:
    suite: ModuleType = SUITES[client]
    (tmp_path / "through").mkdir()
    (tmp_path / "flipped").mkdir()
    with BitFlipProxy(served.http, served.grpc) as proxy:
        suite.verify(served, suite.exchange(proxy.http, proxy.grpc, tmp_path / "through"))
    assert proxy.answers > 0, "the client's calls did not go through the proxy"
    flip_at = random.randrange(proxy.answers)
    with BitFlipProxy(served.http, served.grpc, flip_at=flip_at) as flipping:
        try:
            report = suite.exchange(flipping.http, flipping.grpc, tmp_path / "flipped")
        except AssertionError as failed:  # the client itself refused the answer
            said_no = f"the client failed: {str(failed)[:300]}"
        else:
            with pytest.raises(AssertionError) as failed_check:
                suite.verify(served, report)
            said_no = f"the check failed: {str(failed_check.value)[:300]}"
    assert flipping.flipped is not None, f"answer {flip_at} of {proxy.answers} never came"
    print(f"{client}: flipped {flipping.flipped}; {said_no}")
