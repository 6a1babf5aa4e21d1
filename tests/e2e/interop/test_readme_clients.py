"""README "Clients you already have": each block, as written, runs in its client's virtualenv
against a real server and prints what its ``# prints:`` line says (issue #24, acceptance 5).

A block names its client in its ``pip install`` comment; the test only points the block's
addresses at the test server (``127.0.0.1:8000``, ``127.0.0.1:8081``, ``port=8000``) and
compares the printed words with the block's last line. That answer is also the model's own.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.interop import DEFAULT, Served, client_python
from tests.helpers.support import ROOT

pytestmark = pytest.mark.e2e
SECTION = re.compile(r"^## Clients you already have\n(.*?)^## ", re.S | re.M)
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
CLIENTS = {"tritonclient": "tritonclient", "kserve": "kserve", "mlflow-skinny": "mlflow"}


def _blocks() -> dict[str, str]:
    match = SECTION.search((ROOT / "README.md").read_text())
    assert match, "README has no 'Clients you already have' section"
    blocks = {}
    for code in BLOCK.findall(match.group(1)):
        pip = re.search(r"# pip install '?([\w-]+)", code)
        assert pip and pip.group(1) in CLIENTS, f"a block names no known client:\n{code}"
        blocks[CLIENTS[pip.group(1)]] = code
    return blocks


def test_the_readme_shows_a_call_for_each_client() -> None:
    assert set(_blocks()) == set(CLIENTS.values())


@pytest.mark.parametrize("client", list(CLIENTS.values()))
def test_the_readme_call_prints_what_it_says(served: Served, client: str, tmp_path: Path) -> None:
    code = _blocks()[client]
    http_port = served.http.rsplit(":", 1)[1]
    local = (
        code.replace("127.0.0.1:8000", served.http)
        .replace("127.0.0.1:8081", served.grpc)
        .replace("port=8000", f"port={http_port}")
    )
    assert local != code, "the block names none of the documented addresses"
    script = tmp_path / f"readme_{client}.py"
    script.write_text(local)
    ran = subprocess.run(
        [str(client_python(client)), str(script)], capture_output=True, text=True, timeout=180
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    promised = code.rstrip().splitlines()[-1].removeprefix("# prints:").split()
    assert ran.stdout.split() == promised, ran.stdout
    model_says = served.models[DEFAULT].predict(np.full((1, 30), 1.0)).tolist()
    assert promised[0] == str(model_says), (promised, model_says)
