"""Floor and measurement on the same thread count: torch, OpenCV and faiss here, and the
environment variables that child processes and later imports read."""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def bench_threads() -> int:
    """Threads for floor and measurement: $GEOBENCH_BENCH_THREADS, else the CPU count."""
    env = os.environ.get("GEOBENCH_BENCH_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def set_threads(n: int) -> None:
    """Use n threads in torch, OpenCV and faiss here, and in child processes started later.

    Only libraries already imported are touched, so this stays cheap; the environment
    variables cover children and libraries imported afterwards.
    """
    n = max(1, int(n))
    for var in THREAD_ENV:
        os.environ[var] = str(n)
    os.environ["GEOBENCH_BENCH_THREADS"] = str(n)
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(n)
    if "faiss" in sys.modules:
        with contextlib.suppress(Exception):
            sys.modules["faiss"].omp_set_num_threads(n)


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Temporarily run on n threads (restores the previous count afterwards)."""
    before = os.environ.get("GEOBENCH_BENCH_THREADS")
    previous = int(before) if before and before.isdigit() else bench_threads()
    set_threads(n)
    try:
        yield
    finally:
        set_threads(previous)
