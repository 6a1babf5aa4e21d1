"""How many threads one model call may use: OpenMP's (HistGradientBoosting, KMeans, ...) and
BLAS's, through threadpoolctl (scikit-learn's own dependency for this).

Set by ``ServedModel`` as each version is loaded, in the thread that loads and warms it up and
in the inference thread (the off-path scorer's one thread does both): after the load, since an
artifact may bring a runtime of its own; OpenMP's count is a setting of the calling thread,
BLAS's of the process. With the libraries' default of every core, a one-row call of an OpenMP
model enters a parallel region per tree and waits on threads that share the cores with the
event loop and the other workers: on 2 cores under load, HistGradientBoosting's one-row call
took 9.4 ms against 3.5 with one. scikit-learn's OpenMP loops split the rows between threads,
never one row's sum, so its outputs do not depend on the count.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def limit_model_threads(threads: int) -> None:
    """Model calls from this thread use at most ``threads`` threads; 0 changes nothing."""
    if threads > 0:
        threadpool_limits(limits=threads)
