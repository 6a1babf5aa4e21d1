"""Requests from inside a node of the ``make k8s-test`` cluster (run there with ``nsenter --net``).

Cluster addresses (the Service's ClusterIP, pod IPs) exist only in the nodes' network
namespaces, so scripts/k8s_test.py runs this module there and reads its JSON on stdout.

* ``predict URL N C``: N predictions of the artifact's example row over C threads.
* ``load URL C``: the same, until SIGINT or SIGTERM; what was answered and every prediction id
  acknowledged (to look up in the shared prediction log).
* ``count IP...``: each pod's ``modelserve_predictions_total``, summed over its series.
* ``versions SECONDS VERSION IP...``: polls each pod until it answers VERSION; the wall time
  (``time.time()``) of each pod's first such answer.
* ``query PROMETHEUS EXPR...``: each PromQL expression's instant result (a list per expression).

Every prediction goes on a fresh connection: kube-proxy balances connections, so keep-alive
would pin one pod, and a rollout's failures are in new connections to a leaving pod.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from scripts.stack_test_engine import example_and_truth

COUNTER = "modelserve_predictions_total{"


class Predictor:
    def __init__(self, url: str) -> None:
        self.url = url
        self.example, self.truth = example_and_truth()
        self.ids: list[str] = []
        self.versions: Counter[str] = Counter()
        self.lock = threading.Lock()

    def one(self, _: object = None) -> str:
        try:
            with httpx.Client(timeout=30, headers={"Connection": "close"}) as client:
                answer = client.post(f"{self.url}/predict", json={"instances": [self.example]})
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if answer.status_code != 200:
            return f"HTTP {answer.status_code}: {answer.text[:200]}"
        body = answer.json()
        if body.get("predictions") != self.truth:
            return f"wrong answer: {body}"
        with self.lock:
            self.ids.extend(body["prediction_ids"])
            self.versions[str(body["version"])] += 1
        return "ok"


def predict(url: str, total: int, concurrency: int) -> dict[str, object]:
    predictor = Predictor(url)
    with ThreadPoolExecutor(concurrency) as pool:
        outcomes = Counter(pool.map(predictor.one, range(total)))
    return {"ok": outcomes.pop("ok", 0), "other": dict(outcomes), "truth": predictor.truth}


def load(url: str, concurrency: int) -> dict[str, object]:
    predictor = Predictor(url)
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    def client() -> None:
        while not stop.is_set():
            outcome = predictor.one()
            with lock:
                outcomes[outcome] += 1

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    print("started", flush=True)
    while not stop.wait(0.2):
        pass
    for thread in threads:
        thread.join()
    return {
        "ok": outcomes.pop("ok", 0),
        "other": dict(outcomes),
        "versions": dict(predictor.versions),
        "ids": predictor.ids,
    }


def count(ips: list[str]) -> dict[str, float]:
    counts = {}
    for ip in ips:
        text = httpx.get(f"http://{ip}:8000/metrics", timeout=10).text
        lines = [line for line in text.splitlines() if line.startswith(COUNTER)]
        counts[ip] = sum(float(line.rsplit(" ", 1)[1]) for line in lines)
    return counts


def versions(seconds: float, version: str, ips: list[str]) -> dict[str, Any]:
    predictor = Predictor("")
    first: dict[str, float | None] = dict.fromkeys(ips)
    print("started", flush=True)
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline and None in first.values():
            for ip in (ip for ip, at in first.items() if at is None):
                answer = client.post(
                    f"http://{ip}:8000/predict", json={"instances": [predictor.example]}
                )
                if answer.status_code == 200 and str(answer.json()["version"]) == version:
                    first[ip] = time.time()
            time.sleep(0.05)
    return first


def query(prometheus: str, exprs: list[str]) -> list[list[dict[str, Any]]]:
    results = []
    with httpx.Client(base_url=prometheus, timeout=30) as client:
        for expr in exprs:
            answer = client.get("/api/v1/query", params={"query": expr})
            answer.raise_for_status()
            results.append(answer.json()["data"]["result"])
    return results


def main(argv: list[str]) -> int:
    result: object
    if argv[:1] == ["predict"] and len(argv) == 4:
        result = predict(argv[1], int(argv[2]), int(argv[3]))
    elif argv[:1] == ["load"] and len(argv) == 3:
        result = load(argv[1], int(argv[2]))
    elif argv[:1] == ["count"]:
        result = count(argv[1:])
    elif argv[:1] == ["query"] and len(argv) >= 3:
        result = query(argv[1], argv[2:])
    elif argv[:1] == ["versions"] and len(argv) >= 4:
        result = versions(float(argv[1]), argv[2], argv[3:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
