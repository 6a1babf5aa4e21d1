"""``Explainers``: each version's explainer, built once, and the explain calls, all in one
thread of their own: the inference thread and its batcher never see an explanation, so
``/predict`` costs nothing more, whether or not anyone asks for one.

A version's explainer is built on its first ``:explain`` (in that thread; shap is imported
then), checked on the version's own rows, and kept, or its refusal is kept: either way once
per version (the last ``KEPT`` versions). Each request's rows are explained in one call, never
merged with another request's (a linear model's last bits depend on the call). At most
``explain_queue_size`` requests wait or run (503 beyond), each under ``explain_timeout_s``
(504), the build included; a build that outlasts its request goes on for the next one.
A consumer off the request path (``app.serving.attribution``) takes ``explainer(served)`` in
the loop and calls its ``explain`` in a thread of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

from app import metrics
from app.config import Settings
from app.errors import ErrorReason, RequestError, clip
from app.serving.contract import Rows, model_input
from app.serving.explain import build as builder
from app.serving.explain.model import ModelExplainer
from app.serving.explain.result import Explanation, NotExplainableError
from app.serving.runner import ServedModel
from app.serving.threads import limit_model_threads

log = logging.getLogger(__name__)

KEPT = 16  # versions whose explainer (or refusal) is kept
MESSAGE_CHARS = 512
VersionKey = tuple[str, str, str]
Built = ModelExplainer | NotExplainableError


def _refusal(served: ServedModel, exc: Exception) -> NotExplainableError:
    """Any failure to build an explainer, as the refusal the version then keeps."""
    if isinstance(exc, NotExplainableError):
        return exc
    log.exception("explainer for %s version %s failed to build", served.name, served.version)
    said = clip(str(exc).splitlines()[0] if str(exc) else "", MESSAGE_CHARS)
    return NotExplainableError(f"building its explainer failed: {type(exc).__name__}: {said}")


def explain_served(explainer: ModelExplainer, served: ServedModel, rows: Rows) -> Explanation:
    """``rows`` explained, their sum checked against the answers the version serves for them
    (its scorer's: the model's own bits, without a second call of the estimator)."""
    result = served.score(rows)
    return explainer.explain(model_input(rows), (result.predictions, result.probabilities))


class Explainers:
    def __init__(self, settings: Settings) -> None:
        self.timeout_s = settings.explain_timeout_s
        self.queue_size = settings.explain_queue_size
        # Its thread starts with the first build: a server nobody asks costs no thread.
        self._executor = ThreadPoolExecutor(
            1, "explain", initializer=limit_model_threads, initargs=(settings.model_threads,)
        )
        self._built: OrderedDict[VersionKey, Future[Built]] = OrderedDict()
        self._waiting = 0

    def explainer(self, served: ServedModel) -> Future[Built]:
        """The version's explainer (or why it has none), built in the explain thread once."""
        key = (served.name, served.version, served.metadata.sha256)
        found = self._built.get(key)
        if found is None:
            found = self._built[key] = self._executor.submit(self._build, served)
            while len(self._built) > KEPT:
                self._built.popitem(last=False)
        self._built.move_to_end(key)
        return found

    async def explain(self, served: ServedModel, rows: Rows) -> Explanation:
        """The rows' checked explanation; RequestError (counted) when there is none."""
        try:
            explanation = await self._explain(served, rows)
        except RequestError as exc:
            metrics.EXPLAIN_REQUESTS.labels(served.name, served.version, exc.reason).inc()
            raise
        metrics.EXPLAIN_REQUESTS.labels(served.name, served.version, "ok").inc()
        return explanation

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _explain(self, served: ServedModel, rows: Rows) -> Explanation:
        if self._waiting >= self.queue_size:
            message = f"{self._waiting} explain requests are waiting; retry shortly"
            raise RequestError(ErrorReason.OVERLOADED, message)
        self._waiting += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                # Shielded: a request that times out leaves the build to finish for the next.
                explainer = await asyncio.shield(asyncio.wrap_future(self.explainer(served)))
                if isinstance(explainer, NotExplainableError):
                    raise NotExplainableError(str(explainer))
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(
                    self._executor, self._call, served, explainer, rows
                )
        except TimeoutError:
            message = (
                f"explaining took longer than {self.timeout_s} s (MODELSERVE_EXPLAIN_TIMEOUT_S)"
            )
            raise RequestError(ErrorReason.TIMEOUT, message) from None
        except NotExplainableError as exc:
            message = f"model {served.name!r} version {served.version} cannot be explained: {exc}"
            raise RequestError(ErrorReason.NOT_EXPLAINABLE, message) from None
        finally:
            self._waiting -= 1

    @staticmethod
    def _build(served: ServedModel) -> Built:
        start = time.perf_counter()
        try:
            explainer = builder.build(served.estimator, served.metadata, served.contract)
        except Exception as exc:
            refusal = _refusal(served, exc)
            log.warning(
                "model %s version %s cannot be explained: %s", served.name, served.version, refusal
            )
            return refusal
        log.info(
            "explainer for model %s version %s: %s in %s space, built and checked in %.0f ms",
            served.name, served.version, explainer.method, explainer.output,
            (time.perf_counter() - start) * 1000,
        )  # fmt: skip
        return explainer

    @staticmethod
    def _call(served: ServedModel, explainer: ModelExplainer, rows: Rows) -> Explanation:
        start = time.perf_counter()
        try:
            explanation = explain_served(explainer, served, rows)
        except NotExplainableError:
            raise
        except Exception as exc:  # the model refuses this input (an unseen category...)
            said = clip(str(exc), MESSAGE_CHARS)
            message = f"the model rejected the input: {type(exc).__name__}: {said}"
            raise RequestError(ErrorReason.REJECTED_BY_MODEL, message) from None
        elapsed = time.perf_counter() - start
        metrics.EXPLAIN_DURATION.labels(served.name, served.version).observe(elapsed)
        return explanation
