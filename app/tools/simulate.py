"""``modelserve simulate``: realistic traffic with delayed ground truth, for dashboards and alerts.

Rows are drawn from the model's training data: a CSV given with ``data`` (any feature types;
sent as objects keyed by column name, empty cells as null) or scikit-learn's bundled data
sets, matched by feature names. Numeric features can be shifted by ``drift`` standard
deviations, and ``shifts`` force a value into a share of the rows (``city=oslo:0.6``: 60 % of
rows get city "oslo"), which moves a categorical feature's mix. Every answered
prediction gets its true label back on ``POST /feedback`` after ``feedback_delay`` seconds,
flipped to another class with probability ``label_noise``. Sends are open-loop at ``rate``
requests per second with bounded concurrency; the run ends at ``duration`` plus the feedback
delay, at the latest. The rate reported is requests over the sending window only (the
feedback delay after it is not sending time); ``progress_every_s`` reports a line while running.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import numpy.typing as npt

from app.tools.sim_data import Shift, SimulationError, frame_data, is_classification, training_data

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}
__all__ = ["Shift", "SimConfig", "SimSummary", "SimulationError", "check_loopback", "simulate"]


@dataclass(frozen=True)
class SimConfig:
    url: str = "http://127.0.0.1:8000"
    rate: float = 20.0
    duration: float = 10.0
    drift: float = 0.0
    label_noise: float = 0.0
    feedback_delay: float = 1.0
    model: str | None = None
    seed: int = 0
    concurrency: int = 32
    timeout_s: float = 10.0
    data: Path | None = None
    target: str | None = None
    shifts: tuple[Shift, ...] = ()
    progress_every_s: float = 0.0  # 0: no progress lines


@dataclass
class SimSummary:
    predictions_ok: int = 0
    prediction_errors: Counter[str] = field(default_factory=Counter)
    feedback_ok: int = 0
    feedback_errors: Counter[str] = field(default_factory=Counter)
    labels_flipped: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    sending_s: float = 0.0  # the sending window: elapsed minus the wait for the last labels

    @property
    def sent(self) -> int:
        return self.predictions_ok + sum(self.prediction_errors.values())

    def progress(self, now_s: float) -> str:
        labels = self.feedback_ok + sum(self.feedback_errors.values())
        return (
            f"progress {now_s:6.1f} s  sent {self.sent} ({self.sent / max(now_s, 1e-9):.1f}/s), "
            f"ok {self.predictions_ok}, errors {sum(self.prediction_errors.values())}, "
            f"labels sent {labels} ({self.feedback_ok} accepted)"
        )

    def lines(self) -> list[str]:
        lat = np.asarray(self.latencies_ms or [0.0])
        sent = self.sent
        judged = sum(self.outcomes.values())
        accuracy = self.outcomes["correct"] / judged if judged else float("nan")
        return [
            f"elapsed            {self.elapsed_s:.1f} s ({self.sending_s:.1f} s sending, "
            "then the last labels)",
            f"predictions        {self.predictions_ok} ok of {sent} "
            f"({sent / max(self.sending_s, 1e-9):.1f}/s) errors {dict(self.prediction_errors)}",
            f"latency            p50 {np.percentile(lat, 50):.1f} ms, "
            f"p95 {np.percentile(lat, 95):.1f} ms",
            f"feedback           {self.feedback_ok} accepted, errors {dict(self.feedback_errors)}, "
            f"{self.labels_flipped} labels flipped",
            f"served accuracy    {accuracy:.3f} over {judged} labelled predictions",
        ]


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host in LOOPBACK_NAMES:
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SimulationError(f"{url} is not a loopback address; pass --allow-remote to send there")


class Simulator:
    def __init__(
        self,
        config: SimConfig,
        client: httpx.AsyncClient,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.on_progress = on_progress
        self.rng = np.random.default_rng(config.seed)
        self.summary = SimSummary()
        self.predict_path = "/predict"
        self.X: npt.NDArray[np.float64] = np.empty((0, 0))
        self.records: list[dict[str, Any]] | None = None  # typed rows from a CSV
        self.y: npt.NDArray[Any] = np.empty(0)
        self.classes: list[Any] = []
        self.classification = True
        self._feedback: asyncio.Queue[tuple[float, str, Any]] = asyncio.Queue()
        self._slots = asyncio.Semaphore(config.concurrency)
        self._stop_at = float("inf")

    async def prepare(self) -> None:
        names: list[str] | None = None
        if self.config.model is not None:
            resp = await self.client.get(f"/models/{self.config.model}")
            if resp.status_code != 200:
                raise SimulationError(f"GET /models/{self.config.model}: {resp.text}")
            metadata = resp.json()["metadata"]
            if not metadata:
                raise SimulationError(f"model {self.config.model!r} has no versions")
            names = [f["name"] for f in metadata[-1]["features"]]
            self.predict_path = f"/v1/models/{self.config.model}:predict"
        if self.config.data is not None:
            self.records, y = frame_data(self.config.data, self.config.target)
            self.classification = is_classification(y)
            self._apply_shifts(self.records)
        else:
            X, y, self.classification = training_data(names)
            self.X = X + self.config.drift * X.std(axis=0)
        self.y = y
        self.classes = sorted(np.unique(y).tolist()) if self.classification else []

    def _apply_shifts(self, records: list[dict[str, Any]]) -> None:
        for shift in self.config.shifts:
            if records and shift.feature not in records[0]:
                raise SimulationError(f"--shift: {shift.feature!r} is not a column of the data")
            for row in records:
                if self.rng.random() < shift.share:
                    row[shift.feature] = shift.value

    def _row(self, index: int) -> Any:
        if self.records is not None:
            return self.records[index]
        return self.X[index].tolist()

    def _label(self, index: int) -> Any:
        truth = self.y[index]
        truth = truth.item() if isinstance(truth, np.generic) else truth
        if self.rng.random() >= self.config.label_noise:
            return truth
        self.summary.labels_flipped += 1
        if self.classification:
            others = [c for c in self.classes if c != truth]
            return others[int(self.rng.integers(len(others)))]
        return truth + float(self.rng.normal(0, self.y.std()))

    async def _predict_one(self) -> None:
        async with self._slots:
            if time.monotonic() >= self._stop_at:  # the server fell behind: stay bounded
                self.summary.prediction_errors["skipped"] += 1
                return
            index = int(self.rng.integers(len(self.y)))
            start = time.perf_counter()
            try:
                resp = await self.client.post(
                    self.predict_path, json={"instances": [self._row(index)]}
                )
            except httpx.HTTPError as exc:
                self.summary.prediction_errors[type(exc).__name__] += 1
                return
            self.summary.latencies_ms.append((time.perf_counter() - start) * 1000)
            if resp.status_code != 200:
                self.summary.prediction_errors[str(resp.status_code)] += 1
                if resp.status_code == 422:
                    raise SimulationError(f"the server refused the rows: {resp.text}")
                return
            self.summary.predictions_ok += 1
            due = time.monotonic() + self.config.feedback_delay
            pid = resp.json()["prediction_ids"][0]
            await self._feedback.put((due, pid, self._label(index)))

    async def _send_feedback(self, stop_at: float) -> None:
        """Send due labels in batches until the queue is drained after sending stopped."""
        pending: list[tuple[float, str, Any]] = []
        while True:
            while not self._feedback.empty():
                pending.append(self._feedback.get_nowait())
            now = time.monotonic()
            due = [p for p in pending if p[0] <= now]
            pending = [p for p in pending if p[0] > now]
            if due:
                await self._post_feedback(due)
            if now >= stop_at and not pending and self._feedback.empty():
                return
            if now >= stop_at + self.config.feedback_delay + self.config.timeout_s:
                return  # bounded: give up on what is still pending
            await asyncio.sleep(0.05)

    async def _post_feedback(self, due: list[tuple[float, str, Any]]) -> None:
        body = [{"prediction_id": pid, "label": label} for _, pid, label in due]
        try:
            resp = await self.client.post("/feedback", json=body)
        except httpx.HTTPError as exc:
            self.summary.feedback_errors[type(exc).__name__] += len(body)
            return
        if resp.status_code != 200:
            self.summary.feedback_errors[str(resp.status_code)] += len(body)
            return
        accepted = resp.json()["feedback"]
        self.summary.feedback_ok += len(accepted)
        for item in accepted:
            if "outcome" in item:
                self.summary.outcomes[item["outcome"]] += 1

    async def _report_progress(self, start: float) -> None:
        every = self.config.progress_every_s
        while self.on_progress is not None and every > 0:
            await asyncio.sleep(every)
            self.on_progress(self.summary.progress(time.monotonic() - start))

    async def run(self) -> SimSummary:
        await self.prepare()
        start = time.monotonic()
        stop_sending = start + self.config.duration
        self._stop_at = stop_sending + self.config.timeout_s
        feedback = asyncio.create_task(self._send_feedback(stop_sending))
        progress = asyncio.create_task(self._report_progress(start))
        tasks: set[asyncio.Task[None]] = set()
        sent = 0
        while (now := time.monotonic()) < stop_sending:
            target = int((now - start) * self.config.rate) + 1
            for _ in range(target - sent):
                task = asyncio.create_task(self._predict_one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            sent = max(sent, target)
            await asyncio.sleep(min(0.01, 1 / self.config.rate))
        try:
            if tasks:
                await asyncio.gather(*tasks)
            # Sending is over once the last prediction is answered; waiting for labels is not.
            self.summary.sending_s = time.monotonic() - start
            await feedback
        finally:
            progress.cancel()
            feedback.cancel()
            for task in tasks:
                task.cancel()
        self.summary.elapsed_s = time.monotonic() - start
        return self.summary


async def simulate(
    config: SimConfig, on_progress: Callable[[str], None] | None = None
) -> SimSummary:
    limits = httpx.Limits(max_connections=config.concurrency)
    async with httpx.AsyncClient(
        base_url=config.url, timeout=config.timeout_s, limits=limits
    ) as client:
        return await Simulator(config, client, on_progress).run()
