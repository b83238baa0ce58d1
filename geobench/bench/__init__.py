"""Benchmarks: every stage measured against its floor in the same run, reported as ratios.

Absolute times on a shared machine are noise; a ratio against a floor measured in the same
process, on the same threads, moments apart, is not. `geobench bench` imports
`geobench.bench.<stage>` for each stage in STAGES and calls its `run(quick: bool)`, which
returns rows (dicts in the contract of `geobench.bench.rows`; `make_row` builds one).

What a stage module imports from here:

    make_row, BenchRow, FIELDS, parse_target      the row contract             (rows)
    interleaved, Timings, timeit, time_samples,   timing floor and measurement (timing)
      cpu_clock, planted
    bench_threads, set_threads, threads           one thread count for both    (threadcount)
    peak_rss_subprocess, PeakMemory               a call's peak memory in a    (child)
                                                  fresh interpreter
    peak_during, Peak, current_rss, peak_rss,     this process's memory; what  (memory)
      reset_peak_rss, MB                          a block adds at its peak
    STAGES, STAGE_MODULES, selected               the stages; --rows filter    (stages)

The machinery behind `geobench bench` lives beside it: `collect` (run the stages, one
child process each), `check` and `stats` (the regression gate), `noise`, `output` (tables,
bench.csv and bench.h5). Nothing heavy is imported here.
"""
from __future__ import annotations

from geobench.bench.child import PeakMemory, peak_rss_subprocess
from geobench.bench.memory import MB, Peak, current_rss, peak_during, peak_rss, reset_peak_rss
from geobench.bench.rows import FIELDS, BenchRow, is_number, make_row, parse_target
from geobench.bench.stages import STAGE_ISSUES, STAGE_MODULES, STAGES, selected
from geobench.bench.threadcount import THREAD_ENV, bench_threads, set_threads, threads
from geobench.bench.timing import (
    SMOKE_ENV,
    Timings,
    cpu_clock,
    interleaved,
    planted,
    smoke,
    time_samples,
    timeit,
)

__all__ = [
    "STAGES", "STAGE_ISSUES", "STAGE_MODULES", "FIELDS", "MB", "THREAD_ENV", "BenchRow",
    "PeakMemory", "parse_target", "is_number", "make_row", "bench_threads", "set_threads",
    "threads", "timeit", "time_samples", "interleaved", "Timings", "cpu_clock", "selected",
    "planted", "current_rss", "peak_rss", "reset_peak_rss", "peak_during", "Peak",
    "peak_rss_subprocess", "SMOKE_ENV", "smoke",
]
