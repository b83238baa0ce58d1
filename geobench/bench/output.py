"""Write a benchmark run to DIR/bench.csv and DIR/bench.h5, and render it as rich tables."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from geobench.bench.check import CheckResult
from geobench.bench.collect import BenchRun
from geobench.bench.rows import FIELDS, BenchRow
from geobench.fileio import atomic_h5, atomic_open

CSV_COLUMNS = FIELDS + ("peer", "status", "params", "error", "samples")
CHECK_COLUMNS = ("stage", "case", "metric", "target", "baseline", "current", "change",
                 "tolerance", "detectable", "p_value", "n_baseline", "n_current", "again",
                 "verdict")
CHECK_NUMBERS = ("baseline", "current", "change", "tolerance", "detectable", "p_value", "again")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def write_csv(path: Path, columns: tuple[str, ...], records: list[dict[str, Any]]) -> None:
    with atomic_open(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        for rec in records:
            writer.writerow({c: _cell(rec.get(c)) for c in columns})


def _check_records(check: CheckResult) -> list[dict[str, Any]]:
    return [{c: getattr(line, c) for c in CHECK_COLUMNS} for line in check.lines]


def write_h5(path: Path, run: BenchRun, check: CheckResult | None) -> None:
    """One dataset per column under /rows (NaN for blanks), stages and check beside them."""
    import h5py
    import numpy as np

    text = h5py.string_dtype("utf-8")
    records = [r.as_dict() for r in run.rows]
    with atomic_h5(path, 64 * len(CSV_COLUMNS) * (len(records) + 1)) as h5:
        h5.attrs["schema"] = "geobench.bench/1"
        for key, value in run.meta.items():
            h5.attrs[key] = json.dumps(value) if isinstance(value, dict) else value
        rows = h5.create_group("rows")
        for col in CSV_COLUMNS:
            values = [rec[col] for rec in records]
            if col in ("value", "floor", "ratio"):
                rows.create_dataset(col, data=np.array(
                    [np.nan if v is None else v for v in values], dtype=np.float64))
            elif col == "samples":  # the repetitions, one variable-length array per row
                data = rows.create_dataset(col, (len(run.rows),),
                                           dtype=h5py.vlen_dtype(np.float64))
                for i, row in enumerate(run.rows):
                    data[i] = np.asarray(row.samples, dtype=np.float64)
            else:
                rows.create_dataset(col, data=[str(v) for v in values], dtype=text)
        stages = h5.create_group("stages")
        for result in run.stages:
            group = stages.create_group(result.stage)
            group.attrs["seconds"] = result.seconds
            group.attrs["n_rows"] = len(result.rows)
            group.attrs["failed"] = result.failed
            group.attrs["traceback"] = result.traceback
        if check is not None:
            group = h5.create_group("check")
            group.attrs["baseline"] = check.baseline_path
            group.attrs["failed"] = len(check.failed)
            for col in CHECK_COLUMNS:
                values = [getattr(line, col) for line in check.lines]
                if col in CHECK_NUMBERS:
                    group.create_dataset(col, data=np.array(
                        [np.nan if v is None else v for v in values], dtype=np.float64))
                else:
                    group.create_dataset(col, data=[str(v) for v in values], dtype=text)


def write_bench(run: BenchRun, out: str | Path, check: CheckResult | None = None) -> list[Path]:
    """Write bench.csv, bench.h5 (and bench-check.csv after a check); return the paths."""
    out = Path(out)
    paths = [out / "bench.csv", out / "bench.h5"]
    write_csv(paths[0], CSV_COLUMNS, [r.as_dict() for r in run.rows])
    write_h5(paths[1], run, check)
    if check is not None:
        paths.append(out / "bench-check.csv")
        write_csv(paths[2], CHECK_COLUMNS, _check_records(check))
    return paths


def read_bench_h5(path: str | Path) -> list[BenchRow]:
    """Rows back from a bench.h5 (used by tests and by anyone comparing runs)."""
    import h5py
    import numpy as np

    with h5py.File(path, "r") as h5:
        g = h5["rows"]
        cols = {c: g[c][()] for c in CSV_COLUMNS if c in g}

    def text(c: str, i: int) -> str:
        v = cols[c][i]
        return v.decode() if isinstance(v, bytes) else str(v)

    def num(c: str, i: int) -> float | None:
        v = float(cols[c][i])
        return None if np.isnan(v) else v

    return [BenchRow(stage=text("stage", i), case=text("case", i), metric=text("metric", i),
                     value=num("value", i), floor=num("floor", i), ratio=num("ratio", i),
                     unit=text("unit", i), target=text("target", i), params=text("params", i),
                     error=text("error", i),
                     peer=text("peer", i) if "peer" in cols else "",
                     samples=tuple(float(x) for x in cols["samples"][i]) if "samples" in cols
                     else ())
            for i in range(len(cols["stage"]))]


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if value == 0 or 0.01 <= abs(value) < 1e5:
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return f"{value:.2e}"


STATUS_STYLE = {"pass": "green", "miss": "red", "info": "dim", "error": "bold red"}
VERDICT_STYLE = {"ok": "green", "improved": "cyan", "regression": "bold red",
                 "missing": "bold red", "new": "yellow", "skipped": "dim",
                 "noisy": "magenta", "unconfirmed": "yellow"}
# the check table's columns (bench-check.csv has them all)
CHECK_SHOWN = ("stage", "case", "metric", "baseline", "current", "again", "change",
               "tolerance", "detectable", "p_value", "verdict")


def bench_table(rows: list[BenchRow], title: str = "geobench bench"):
    """A rich table: one line per row, ratio against target with pass / miss / error.

    Extra parameters and notes stay in bench.csv; the case column takes the wrapping.
    """
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left")
    table.add_column("stage", no_wrap=True)
    table.add_column("case", ratio=1, overflow="fold")
    table.add_column("metric", no_wrap=True)
    for col in ("value", "floor"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("unit", no_wrap=True)
    table.add_column("ratio", justify="right", no_wrap=True)
    table.add_column("target", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for r in rows:
        style = STATUS_STYLE.get(r.status, "")
        if r.status == "error":
            table.add_row(escape(r.stage), f"[{style}]{escape(r.error)}[/]", r.metric, "", "",
                          "", "", "", f"[{style}]error[/]")
            continue
        table.add_row(escape(r.stage), escape(r.case), escape(r.metric), _fmt(r.value),
                      _fmt(r.floor), escape(r.unit), _fmt(r.ratio), escape(r.target),
                      f"[{style}]{r.status}[/]")
    return table


def check_table(check: CheckResult, show_all: bool = False):
    """Rows whose verdict matters (regressions, missing, new, improved), or all of them."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"regression check against {check.baseline_path}"),
                  title_justify="left")
    for col in CHECK_SHOWN:
        name = {"detectable": "noise", "p_value": "p", "again": "again"}.get(col, col)
        if col == "case":
            table.add_column(name, ratio=1, overflow="fold")
        else:
            table.add_column(name, no_wrap=True, justify="right" if col in CHECK_NUMBERS
                             else "left")
    for line in check.lines:
        if not show_all and line.verdict in ("ok", "skipped"):
            continue
        style = VERDICT_STYLE.get(line.verdict, "")
        change = "" if line.change is None else f"{line.change:+.1%}"
        noise = "" if line.detectable is None else f"{line.detectable:.0%}"
        p = "" if line.p_value is None else f"{line.p_value:.2g}"
        table.add_row(escape(line.stage), escape(line.case), escape(line.metric),
                      _fmt(line.baseline), _fmt(line.current), _fmt(line.again), change,
                      f"{line.tolerance:.0%}", noise, p, f"[{style}]{line.verdict}[/]")
    return table


def console():
    """stdout console; wide when piped (CI logs) so the table does not wrap every cell."""
    import sys

    from rich.console import Console

    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 140)


def markdown_table(rows: list[BenchRow]) -> str:
    """The rows as a Markdown table (for READMEs and PR comments)."""
    lines = ["| stage | case | metric | value | floor | unit | ratio | target | status |",
             "|---|---|---|---:|---:|---|---:|---|---|"]
    for r in rows:
        if r.status == "error":
            lines.append(f"| {r.stage} | {r.error} | error | | | | | | error |")
            continue
        lines.append(f"| {r.stage} | {r.case} | {r.metric} | {_fmt(r.value)} | {_fmt(r.floor)} "
                     f"| {r.unit} | {_fmt(r.ratio)} | {r.target} | {r.status} |")
    return "\n".join(lines) + "\n"
