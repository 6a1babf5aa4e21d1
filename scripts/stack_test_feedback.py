"""Acknowledged feedback survives ``docker compose restart modelserve`` (``make stack-test``).

Predictions are made on the replicas first; their labels are then sent one by one while the
replicas restart, to whichever replica answers. Afterwards every label that got a 200 must be
in the shared prediction log: sending it again answers 409 ``duplicate_feedback``.

While no replica is UP, the balancer answers 503 at once (no replica read the label, it is sent
again). A label whose answer the client gave up on (5 s), or that the balancer answered 502 or
504 for, may still have been stored by a replica, and its retry then answers 409: that label was
stored, and counts as such.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import httpx

from scripts.stack_test_engine import ROOT

PREDICTIONS = 300
# The balancer's own answers when a replica it had sent the label to gave none (502) or not in
# time (504): the replica may have stored it all the same, as for a label with no answer.
GATEWAY_ERRORS = (502, 504)


def _example() -> list[float]:
    meta = json.loads((ROOT / "models/breast-cancer/1/metadata.json").read_text())
    example: list[float] = meta["example"]
    return example


def _post(ports: list[int], path: str, body: object) -> httpx.Response | None:
    """POST to the first replica that answers; None if none does."""
    for port in ports:
        try:
            return httpx.post(f"http://127.0.0.1:{port}{path}", json=body, timeout=5)
        except httpx.HTTPError:
            continue
    return None


def feedback_through_restart(
    ports_of: Callable[[], list[int]], restart: Callable[[], None]
) -> list[str]:
    ports = ports_of()
    ids: list[str] = []
    example = _example()
    for i in range(PREDICTIONS):
        port = ports[i % len(ports)]
        made = httpx.post(f"http://127.0.0.1:{port}/predict", json={"instances": [example]})
        made.raise_for_status()
        ids.append(made.json()["prediction_ids"][0])
    time.sleep(1)  # past the log's flush interval: the rows are committed before the restart

    restarting = threading.Thread(target=restart)
    restarting.start()
    acked: list[str] = []
    during = 0
    refused: dict[str, int] = {}
    unanswered: set[str] = set()  # sent, no answer: a replica may have stored it later
    stored_late = 0
    pending = list(ids)
    deadline = time.monotonic() + 240
    while pending and time.monotonic() < deadline:
        pid = pending[0]
        resp = _post(ports, "/feedback", {"prediction_id": pid, "label": 0})
        if resp is None or resp.status_code >= 500:
            key = "no answer" if resp is None else str(resp.status_code)
            refused[key] = refused.get(key, 0) + 1
            if resp is None or resp.status_code in GATEWAY_ERRORS:
                unanswered.add(pid)
            time.sleep(0.2)
            ports = ports_of() or ports
            continue
        if resp.status_code == 409 and pid in unanswered:
            stored_late += 1  # the unanswered attempt was stored after all
        else:
            assert resp.status_code == 200, resp.text
        acked.append(pending.pop(0))
        if restarting.is_alive():  # spread the labels over the restart, not all before it
            during += 1
            time.sleep(0.1)
    restarting.join(200)
    assert not pending, f"{len(pending)} labels never acknowledged"
    ports = ports_of()
    lost = []
    for pid in acked:
        again = _post(ports, "/feedback", {"prediction_id": pid, "label": 0})
        if again is None or again.status_code != 409:
            lost.append((pid, None if again is None else again.status_code))
    assert not lost, f"{len(lost)} acknowledged labels lost: {lost[:5]}"
    return [
        f"{len(acked)} labels acknowledged ({during} while the replicas restarted), "
        f"5xx/no answer retried: {refused or 'none'}, stored by an unanswered attempt: "
        f"{stored_late}",
        f"all {len(acked)} answer 409 duplicate_feedback after the restart",
    ]
