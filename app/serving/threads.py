"""How many threads one model call may use: OpenMP's (HistGradientBoosting, KMeans, ...) and
BLAS's, through threadpoolctl (scikit-learn's own dependency for this).

Set once in each thread that calls models (the inference and loader threads, the off-path
scorer): OpenMP's count is a setting of the calling thread, BLAS's of the process. With the
libraries' default of every core, a one-row call of an OpenMP model enters a parallel region
per tree and waits on threads that share the cores with the event loop and the other workers:
on 2 cores under load, HistGradientBoosting's one-row call took 9.4 ms against 3.5 with one.
Rows are split between threads, never a row's sum, so the outputs do not depend on the count.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import threadpool_limits


def limit_model_threads(threads: int) -> None:
    """Model calls from this thread use at most ``threads`` threads; 0 changes nothing."""
    if threads > 0:
        threadpool_limits(limits=threads)


def model_caller(name: str, threads: int) -> ThreadPoolExecutor:
    """One thread that calls models, limited to ``threads`` per call."""
    return ThreadPoolExecutor(1, name, initializer=limit_model_threads, initargs=(threads,))
