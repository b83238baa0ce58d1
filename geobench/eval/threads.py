"""Query blocks searched side by side on the CPU.

After each block product come per-score passes (comparisons, top-K candidates) that
numpy runs on one core. With one worker per core, each owning whole query blocks, one
worker's passes run while the other's product does: both cores stay busy. Each worker's
product then runs on one BLAS thread (a BLAS pool spinning between products would
take the core the passes need), set for the duration of the search through
threadpoolctl.
"""
from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any


def cpu_threads() -> int:
    """Threads the user gave the numeric libraries (OMP_NUM_THREADS and kin), else every
    CPU this process may use."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


MIN_ROWS = 256  # query rows per worker, at least: thinner products run slower


def search_workers(backend: str, n_query: int) -> int:
    """Workers for a search: one per CPU thread on the numpy backend, while each still
    gets MIN_ROWS query rows."""
    if backend != "numpy":
        return 1
    return max(1, min(cpu_threads(), n_query // MIN_ROWS))


def each(fn: Callable[[Any, Any], None], workers: Sequence[Any], jobs: Iterable[Any]) -> None:
    """fn(worker, job) for every job; each worker takes the next job when it is free.
    The first error stops the others at their next job and is raised here."""
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for job in jobs:
        todo.put(job)
    if len(workers) == 1:
        while not todo.empty():
            fn(workers[0], todo.get())
        return
    errors: list[BaseException] = []

    def loop(worker: Any) -> None:
        while not errors:
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            try:
                fn(worker, job)
            except BaseException as exc:  # re-raised in the caller's thread
                errors.append(exc)

    with _one_blas_thread():
        pool = [threading.Thread(target=loop, args=(w,), name=f"geobench-search-{i}",
                                 daemon=True) for i, w in enumerate(workers)]
        for t in pool:
            t.start()
        try:
            for t in pool:
                t.join()
        except BaseException as exc:  # Ctrl-C: the workers stop at their next block
            errors.append(exc)
            raise
    if errors:
        raise errors[0]


@contextlib.contextmanager
def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # then the BLAS keeps its pool: correct, a little slower
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def mean_phases(engines: Sequence[Any]) -> dict[str, float]:
    """Seconds per search phase, summed over workers and divided by their number: the
    wall time of each phase when the workers ran side by side."""
    total: dict[str, float] = {}
    for engine in engines:
        for key, value in getattr(engine, "phases", {}).items():
            total[key] = total.get(key, 0.0) + value
    return {key: value / len(engines) for key, value in total.items()}
