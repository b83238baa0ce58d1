"""Timing a stage's cases: floor and measurement interleaved (ABBA) on the process's CPU
clock, best-of-N, and the planted slowdown that proves the regression gate."""
from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from geobench.bench.threadcount import bench_threads

SMOKE_ENV = "GEOBENCH_BENCH_SMOKE"


def smoke() -> bool:
    """Whether this is a smoke run (`geobench bench --quick` without `--check`): every
    case is measured once, without a warm-up call, enough to show that each stage runs
    and roughly where it stands (first-call costs included), not to gate on."""
    return os.environ.get(SMOKE_ENV, "") == "1"


def _rounds(repeat: int) -> int:
    return 1 if smoke() else max(1, repeat)


def time_samples(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1,
                 number: int = 1) -> list[float]:
    """Seconds per call of fn() for each of `repeat` rounds (after `warmup` untimed calls)."""
    repeat = _rounds(repeat)
    warmup = 0 if smoke() else warmup
    for _ in range(max(0, warmup)):
        fn()
    samples = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        for _ in range(max(1, number)):
            fn()
        samples.append((time.perf_counter() - start) / max(1, number))
    return samples


def timeit(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1, number: int = 1) -> float:
    """Best-of-`repeat` seconds per call: the least disturbed round on a shared machine."""
    return min(time_samples(fn, repeat=repeat, warmup=warmup, number=number))


class Timings(dict):
    """Median seconds per call by name, plus every repetition in `.samples[name]`."""

    samples: dict[str, list[float]]

    def ratios(self, numerator: str, denominator: str) -> list[float]:
        """Per-repetition ratios of two functions timed next to each other (pairs)."""
        return [a / b for a, b in zip(self.samples[numerator], self.samples[denominator])
                if b > 0]


def cpu_clock() -> Callable[[], float]:
    """The clock for in-process timings: CPU time of this process on one bench thread.

    On a shared machine a one-thread computation is descheduled for random stretches;
    wall time counts them, CPU time does not, so floor and measurement differ only by the
    work they do (what a regression changes). With several threads CPU time would count
    idle spinning, so wall time is used; code that works in child processes (worker
    pools) must pass `clock=time.perf_counter` itself.
    """
    return time.process_time if bench_threads() == 1 else time.perf_counter


def interleaved(fns: Mapping[str, Callable[[], Any]], repeat: int = 5, warmup: int = 1,
                min_seconds: float = 0.0,
                clock: Callable[[], float] | None = None) -> Timings:
    """Seconds per call of several functions timed in alternation, `repeat` rounds.

    Alternating floor and measurement makes both see the same background load, so the
    ratio within one round is steady even when other processes come and go; the order
    flips every round (ABBA) so a slow drift favours neither. With `min_seconds`, each
    timed sample loops a function enough times to last about that long (sub-millisecond
    calls are otherwise dominated by timer and scheduler jitter). Returns the median per
    call and, in `.samples`, every round, for `make_row(samples=t.ratios(a, b))`.
    `clock`: default `cpu_clock()`.
    """
    now = clock or cpu_clock()
    repeat = _rounds(repeat)
    warmup = 0 if smoke() else warmup
    number = {name: 1 for name in fns}
    for name, fn in fns.items():
        for _ in range(max(0, warmup)):
            fn()
        if min_seconds > 0:
            start = now()
            fn()
            once = max(now() - start, 1e-7)
            number[name] = max(1, math.ceil(min_seconds / once))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for round_ in range(max(1, repeat)):
        for name in names if round_ % 2 == 0 else names[::-1]:
            fn, n = fns[name], number[name]
            start = now()
            for _ in range(n):
                fn()
            samples[name].append((now() - start) / n)
    out = Timings({name: statistics.median(v) for name, v in samples.items()})
    out.samples = samples
    return out


def planted(case: str, fn: Callable[[], Any]) -> Callable[[], Any]:
    """fn, made FACTOR times slower when $GEOBENCH_BENCH_PLANT is "FACTOR:REGEX" matching case.

    Used only by benchmarks/prove_gate.py to show the regression gate detects a known
    slowdown. The extra cost is CPU work (a spin on this process's CPU clock for
    FACTOR-1 times what the call itself used), so under load it stretches like real
    code does, unlike a sleep.
    """
    spec = os.environ.get("GEOBENCH_BENCH_PLANT", "")
    if not spec:
        return fn
    import re

    factor_text, _, pattern = spec.partition(":")
    if pattern and re.search(pattern, case) is None:
        return fn
    extra = float(factor_text) - 1.0

    def slower() -> Any:
        start = time.process_time()
        result = fn()
        until = time.process_time() + extra * (time.process_time() - start)
        while time.process_time() < until:
            pass
        return result

    return slower
