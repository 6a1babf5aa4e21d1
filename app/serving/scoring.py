"""The one way in for every prediction, whatever protocol carried it.

A codec (``app.api.codecs``, the CLI) makes three plain calls on ``Inference``: ``route()``
resolves the model (and a pinned version) and picks the answering version; the codec decodes
the body with that version's ``InputContract`` inside ``decoding(route)``; ``predict()`` scores
the rows through the model's batcher under the request timeout (``app.serving.deadlines``),
mints one prediction id per row, hands the result and rows to the prediction log and returns a
typed result. Every refusal on the way is a ``RequestError`` counted once in
``modelserve_prediction_errors_total``.

A request for a model's production alias may be answered by its canary instead
(``app.serving.routing``); rows answered by one version are then offered to the shadow queue to
be scored by the other (production behind a canary, a shadow behind production), after the
answer. Each request counts once per answering version in ``modelserve_version_requests_total``.
A sampled share of the answered rows is explained after the answer (``app.serving.attribution``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from app import metrics
from app.errors import ErrorReason, RequestError, clip, short_repr
from app.registry.store import ModelNotFoundError, RegistryError
from app.results import InferenceResult
from app.serving.attribution import Attribution
from app.serving.batching import BatchResult, QueueFullError
from app.serving.contract import ModelInput, Rows, TypedRows, model_input
from app.serving.deadlines import Deadlines
from app.serving.manager import ModelManager, ModelNotReadyError
from app.serving.offpath_protocol import ShadowLog
from app.serving.routing import current_key, to_canary
from app.serving.runner import ServedModel
from app.serving.shadow import Job, ShadowQueue
from app.serving.typed import unknown_category

log = logging.getLogger(__name__)

UNKNOWN_MODEL_LABEL = "_unknown"
# The most of a model's exception text an error answer (or the log) quotes.
MODEL_MESSAGE_CHARS = 512


# Where a request's answers go with its rows (the prediction log's ``submit``): a float64
# matrix, or typed rows' values as sent. It must never block or raise.
LoggedRows = ModelInput | list[list[Any]]
PredictionSink = Callable[[InferenceResult, LoggedRows], None]


# A random hex digit to the UUID variant's: bits 10, then two of its random bits.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_ids(n: int) -> list[str]:
    """``n`` UUIDv7s (RFC 9562) as 32 hex digits: the Unix time in milliseconds, then 74
    random bits. Time first, the prediction log's id indexes grow at their right edge: a
    commit of random ids dirtied about one index page per row (5x the CPU per commit, and
    twice that for a shadow's rows). Written out: ``uuid.uuid7`` is only in Python 3.14, and a
    ``UUID`` object per id costs 4x as much as this."""
    stamp = f"{time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF:012x}7"
    raw = os.urandom(10 * n).hex()
    return [
        f"{stamp}{raw[i : i + 3]}{_VARIANT[raw[i + 3]]}{raw[i + 4 : i + 19]}"
        for i in range(0, 20 * n, 20)
    ]


@dataclass(frozen=True)
class Route:
    """Which version answers a request, and which (if any) scores its rows off the path."""

    serves: ServedModel
    offpath: ServedModel | None = None  # scores the same rows after the answer
    challenger: str = ""  # the non-production version of the two (its agreement is counted)
    is_shadow: bool = False


class Inference:
    """ready -> decode -> predict, as three plain calls a codec makes in turn:
    ``route()`` (404/503 before the body is read), ``decoding(route)`` around the codec's own
    parsing with ``route.serves.contract`` (its refusals counted), ``predict(route, rows)``."""

    def __init__(
        self,
        models: ModelManager,
        sink: PredictionSink | None,
        timeout_s: float,
        shadow_log: ShadowLog | None = None,
        shadow_queue_size: int = 1000,
        attribution: Attribution | None = None,
    ) -> None:
        self.models = models
        self.sink = sink
        self.timeout_s = timeout_s
        self._deadlines = Deadlines(timeout_s)
        self.attribution = attribution
        self.shadow = ShadowQueue(
            shadow_log, models.registry.root, models.settings, max_jobs=shadow_queue_size
        )

    @contextlib.contextmanager
    def decoding(self, route: Route) -> Iterator[None]:
        """Counts a refusal of the body (size, time, shape, contract) against the route."""
        try:
            yield
        except RequestError as exc:
            served = route.serves
            self._counted(served.name, exc)
            metrics.VERSION_REQUESTS.labels(served.name, served.version, exc.reason).inc()
            raise

    async def predict(
        self, route: Route, rows: Rows, trace: MutableMapping[str, Any] | None = None
    ) -> InferenceResult:
        """Score, log, and offer the rows to the off-path scorer; ``trace`` gets instances."""
        served = route.serves
        if trace is not None:
            trace["instances"] = len(rows)
        try:
            result = await self.score(served, rows)
        except RequestError as exc:
            metrics.VERSION_REQUESTS.labels(served.name, served.version, exc.reason).inc()
            raise
        served.observer.answered.inc()
        if self.attribution is not None:  # the sampling is a countdown: nothing, most answers
            self.attribution.offer(rows, served, route.offpath if route.is_shadow else None)
        if route.offpath is not None:
            answered = BatchResult(result.predictions, result.probabilities)
            self.shadow.offer(
                Job(route.offpath, route.challenger, rows, answered, result.prediction_ids,
                    route.is_shadow)
            )  # fmt: skip
        return result

    async def route(
        self, name: str, version: str | None, trace: MutableMapping[str, Any] | None = None
    ) -> Route:
        """Who answers; ``trace`` (the request's log state) receives model and version."""
        route = await self._choose(name, version)
        if trace is not None:
            trace["model"], trace["version"] = name, route.serves.version
        return route

    async def _choose(self, name: str, version: str | None) -> Route:
        """A pinned version, else the canary for its share of keys, else production."""
        served = await self.resolve(name, version)
        if version is not None:
            return Route(served)
        companions = self.models.companions
        canary = companions.canaries.get(name)
        if canary is not None and to_canary(current_key(), canary.share):
            return Route(canary.served, offpath=served, challenger=canary.served.version)
        shadow = companions.shadows.get(name)
        if shadow is not None:
            return Route(served, offpath=shadow, challenger=shadow.version, is_shadow=True)
        return Route(served)

    async def close(self) -> None:
        """Finish the off-path scoring already queued (before the models close)."""
        if self.attribution is not None:
            self.attribution.close()
        await self.shadow.close()
        self._deadlines.close()

    async def resolve(self, name: str, version: str | None = None) -> ServedModel:
        """The served version of ``name``, or the registry version pinned by the caller."""
        known = name if name in self.models.states else UNKNOWN_MODEL_LABEL
        try:
            if version is None:
                return await self.models.get_loaded(name, self.timeout_s)
            return await self.models.get_version(name, version)
        except ModelNotFoundError as exc:
            # Unknown names share one label value so a client cannot grow the label set.
            raise self._refused(known, ErrorReason.UNKNOWN_MODEL, str(exc), "model") from None
        except ModelNotReadyError as exc:
            raise self._refused(known, ErrorReason.NOT_READY, str(exc), "model") from None
        except (RegistryError, ValueError, OSError, RuntimeError) as exc:
            message = f"model {name!r} version {version} cannot be loaded: {exc}"
            raise self._refused(known, ErrorReason.NOT_READY, message, "model") from None

    async def score(self, served: ServedModel, rows: Rows) -> InferenceResult:
        """Score validated rows through the model's batcher, then log them under new ids."""
        try:
            answered = served.enqueue(rows)
            self._deadlines.watch(answered)
            result = await answered
        except QueueFullError:
            metrics.REQUESTS_REJECTED.labels(served.name).inc()
            message = f"model {served.name!r} is at capacity; retry shortly"
            raise self._refused(served.name, ErrorReason.OVERLOADED, message) from None
        except TimeoutError:
            message = f"prediction took longer than {self.timeout_s} s"
            raise self._refused(served.name, ErrorReason.TIMEOUT, message) from None
        except Exception as exc:
            raise await self._model_failed(served, rows, exc) from None
        ids = new_ids(len(rows))
        answer = InferenceResult(
            served.name, served.version, result.predictions, result.probabilities, ids
        )
        if self.sink is not None:
            # Typed rows are logged as sent (their checked values), a matrix as it is.
            self.sink(answer, rows.cells if isinstance(rows, TypedRows) else rows)
        return answer

    async def _model_failed(self, served: ServedModel, rows: Rows, exc: Exception) -> RequestError:
        """422 when the model refuses this input but still scores its example; else 500."""
        # The model's own message may quote the input (scikit-learn's encoders quote the
        # unknown category): cut, as every value of the client's an error quotes.
        said = clip(str(exc), MODEL_MESSAGE_CHARS)
        if not await served.still_scores():
            log.error(
                "model %s version %s fails on its example: %s", served.name, served.version, said
            )
            message = f"model {served.name!r} version {served.version} failed: {said}"
            return self._refused(served.name, ErrorReason.MODEL_ERROR, message)
        unknown = unknown_category(served.contract.features, model_input(rows))
        if unknown is not None:
            feature, value = unknown
            message = (
                f"feature {feature!r} has the value {short_repr(value)}, not seen in training, "
                f"and the model refuses it: {said}"
            )
            return self._refused(served.name, ErrorReason.REJECTED_BY_MODEL, message, feature)
        message = f"the model rejected the input: {said}"
        return self._refused(served.name, ErrorReason.REJECTED_BY_MODEL, message)

    @staticmethod
    def _counted(model: str, exc: RequestError) -> RequestError:
        metrics.PREDICTION_ERRORS.labels(model, exc.reason).inc()
        return exc

    @classmethod
    def _refused(
        cls, model: str, reason: ErrorReason, message: str, field: str | None = None
    ) -> RequestError:
        return cls._counted(model, RequestError(reason, message, field=field))
