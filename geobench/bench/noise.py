"""A baseline with per-row tolerances from the run-to-run noise of repeated benchmark runs.

Given N bench.csv files of the same command on the same machine, each row's baseline is
the median of its judged number (ratio, or value for floorless rows) and its tolerance is
`margin` times the largest relative deviation seen in either direction, never below
`minimum`, rounded up to 5%. `benchmarks/make_baseline.py` is the command around it.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import replace
from pathlib import Path

from geobench.bench import BenchRow
from geobench.bench.check import BaselineRow, read_baseline
from geobench.bench.output import CSV_COLUMNS, write_csv
from geobench.errors import UsageError


def noise_baseline(paths: list[str | Path], margin: float = 2.0,
                   minimum: float = 0.25) -> list[tuple[BaselineRow, float, int]]:
    """Return (baseline row with tolerance, observed max relative deviation, n runs)."""
    if len(paths) < 2:
        raise UsageError("give at least two bench.csv files of the same command to measure "
                         "run-to-run noise")
    runs = [read_baseline(p) for p in paths]
    order: list[tuple[str, str, str]] = []
    seen: dict[tuple[str, str, str], list[BenchRow]] = {}
    for run in runs:
        for entry in run:
            if entry.row.key not in seen:
                order.append(entry.row.key)
                seen[entry.row.key] = []
            seen[entry.row.key].append(entry.row)
    out = []
    for key in order:
        rows = seen[key]
        numbers = [r.judged for r in rows if r.judged is not None]
        last = rows[-1]
        if not numbers:
            out.append((BaselineRow(last, None), math.nan, len(rows)))
            continue
        mid = statistics.median(numbers)
        spread = max(abs(x - mid) / abs(mid) if mid else abs(x - mid) for x in numbers)
        tol = max(minimum, margin * spread)
        tol = math.ceil(tol * 20 - 1e-9) / 20  # up to the next 5%
        if last.ratio is not None:
            floors = [r.floor for r in rows if r.floor is not None]
            floor = statistics.median(floors) if floors else last.floor
            row = replace(last, ratio=mid, floor=floor,
                          value=None if floor is None else mid * floor)
        else:
            row = replace(last, value=mid)
        out.append((BaselineRow(row, tol), spread, len(rows)))
    return out


def write_baseline(entries: list[tuple[BaselineRow, float, int]], path: str | Path) -> None:
    """A bench.csv plus `tolerance`, `noise` (max relative deviation seen) and `runs` columns."""
    records = []
    for entry, spread, n in entries:
        rec = entry.row.as_dict()
        rec.update(tolerance=entry.tolerance, noise=None if math.isnan(spread) else spread,
                   runs=n)
        records.append(rec)
    write_csv(Path(path), CSV_COLUMNS + ("tolerance", "noise", "runs"), records)
