"""A baseline from repeated benchmark runs: every row's repetitions, kept per run.

Given N bench.csv files of the same command on the same machine, each baseline row holds
the samples of all N runs (`samples`, runs separated by "|"), its judged number is their
median, and `noise` is the smallest worsening the gate can tell from run-to-run noise for
that row (`geobench.bench.stats`, Z run-level standard errors, as seen by a check run as
noisy as the baseline's runs). `tolerance` is the gate factor - 1: the size of change that
matters, the same for every row unless given. `benchmarks/make_baseline.py` is the
command around it.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import replace
from pathlib import Path

from geobench.bench.check import DEFAULT_TOLERANCE, BaselineRow, read_baseline
from geobench.bench.output import CSV_COLUMNS, write_csv
from geobench.bench.stats import MIN_RUNS, PRIOR_RUN_SIGMA, Z, format_samples, run_sigma
from geobench.errors import UsageError

BASELINE_COLUMNS = CSV_COLUMNS + ("tolerance", "noise", "runs")


def detectable(runs: list[list[float]]) -> float:
    """Smallest relative worsening a check run as noisy as these runs can detect."""
    k = len(runs)
    if any(x <= 0 for run in runs for x in run):
        return 0.0
    sigma = run_sigma(runs) if k >= MIN_RUNS else max(run_sigma(runs), PRIOR_RUN_SIGMA)
    return math.expm1(Z * sigma * math.sqrt(1 + 1 / k))


def noise_baseline(paths: list[str | Path], tolerance: float = DEFAULT_TOLERANCE,
                   ) -> list[tuple[BaselineRow, float, int]]:
    """Return (baseline row with its runs' samples, detectable change, n runs) per row."""
    if len(paths) < 2:
        raise UsageError("give at least two bench.csv files of the same command to measure "
                         "run-to-run noise")
    runs = [read_baseline(p) for p in paths]
    order: list[tuple[str, str, str]] = []
    seen: dict[tuple[str, str, str], list[BaselineRow]] = {}
    for run in runs:
        for entry in run:
            if entry.row.key not in seen:
                order.append(entry.row.key)
                seen[entry.row.key] = []
            seen[entry.row.key].append(entry)
    out = []
    for key in order:
        entries = seen[key]
        rows = [e.row for e in entries]
        # one bench.csv is one run: all of its repetitions (or its one number) form one group
        per_run = [[x for group in e.samples() for x in group] for e in entries
                   if e.row.judged is not None]
        last = rows[-1]
        if not per_run:
            out.append((BaselineRow(last, tolerance), math.nan, len(rows)))
            continue
        mid = statistics.median([x for run in per_run for x in run])
        if last.ratio is not None:
            floors = [r.floor for r in rows if r.floor is not None]
            floor = statistics.median(floors) if floors else last.floor
            row = replace(last, ratio=mid, floor=floor,
                          value=None if floor is None else mid * floor)
        else:
            row = replace(last, value=mid)
        row = replace(row, samples=())
        entry = BaselineRow(row, tolerance, tuple(tuple(r) for r in per_run))
        out.append((entry, detectable(per_run), len(rows)))
    return out


def write_baseline(entries: list[tuple[BaselineRow, float, int]], path: str | Path) -> None:
    """A bench.csv plus `tolerance`, `noise` (detectable change) and `runs` columns; the
    `samples` column holds every run's repetitions."""
    records = []
    for entry, spread, n in entries:
        rec = entry.row.as_dict()
        rec.update(tolerance=entry.tolerance, noise=None if math.isnan(spread) else spread,
                   runs=n, samples=format_samples(entry.runs))
        records.append(rec)
    write_csv(Path(path), BASELINE_COLUMNS, records)
