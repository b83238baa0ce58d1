"""`geobench bench`: each stage measured against its floor on this machine; the
regression gate.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from geobench.cli.common import Quiet, command, parse_percent, warn
from geobench.errors import UsageError


@command("bench", examples=[
    "geobench bench --quick",
    "geobench bench eval --check bench/bench.csv",
])
def bench_cmd(
    stage: Annotated[str, typer.Argument(help="prep | mine | eval | models | train | "
                                         "synthetic | all, or a comma list.")] = "all",
    quick: Annotated[bool, typer.Option(
        help="Smoke run: small sizes, each case measured once (a few minutes for all "
             "stages); with --check or --no-smoke, every repetition.")] = False,
    smoke: Annotated[Optional[bool], typer.Option(
        "--smoke/--no-smoke", help="One measurement per case instead of 3-7 [default: "
                                   "with --quick and no --check].")] = None,
    out: Annotated[Path, typer.Option(help="Where bench.csv and bench.h5 go.")] = Path("bench"),
    check: Annotated[Optional[Path], typer.Option(
        help="Baseline bench.csv: exit non-zero on a ratio regression. Measures only the "
             "cases the baseline gates (rows with a direction) unless --rows says "
             "otherwise.")] = None,
    tolerance: Annotated[Optional[str], typer.Option(
        help="Gate factor, in percent of the baseline: a row fails only when worse by more "
             "than this (25 = 25%; a trailing % is accepted) AND beyond its measured noise [default: the "
             "baseline's per-row tolerance, else 25].")] = None,
    threads: Annotated[Optional[int], typer.Option(help="Threads for floor and measurement "
                                                   "(default: all CPUs).")] = None,
    rows: Annotated[Optional[str], typer.Option(
        help="Regular expression: measure (and check) only the cases it matches, e.g. "
             "'deform_conv2d'.")] = None,
    quiet: Quiet = False,
) -> None:
    """Measure each stage against its floor on this machine and report ratios."""
    import re

    from geobench.bench.check import collect_checked, gated_pattern, read_baseline
    from geobench.bench.collect import BenchOptions, resolve_stages
    from geobench.bench.output import bench_table, check_table, console, write_bench

    stages = resolve_stages(stage)
    from geobench.guard import check_output

    check_output(out)  # a file or unwritable --out fails before minutes of measuring
    if tolerance is not None:
        percent = parse_percent(tolerance, "--tolerance")
        if not tolerance.strip().endswith("%") and 0 < percent < 1:
            warn(f"--tolerance {tolerance} is read as {tolerance}% (the unit is percent); "
                 f"for a fraction of {tolerance} write {percent * 100:g}")
        tolerance = percent / 100.0  # the checker's fraction
    if threads is not None and threads < 1:
        raise UsageError(f"--threads {threads} must be at least 1")
    if rows is not None:
        try:
            re.compile(rows)
        except re.error as exc:
            raise UsageError(f"--rows {rows!r} is not a regular expression ({exc})") from None
    baseline = read_baseline(check) if check is not None else None  # fail before measuring
    if baseline is not None and rows is None and gated_pattern(baseline):
        rows = gated_pattern(baseline)  # the gate measures what it can fail on
        gated = {e.row.stage for e in baseline if re.search(rows, e.row.case)}
        stages = tuple(s for s in stages if s in gated)
    options = BenchOptions(stages=stages, quick=quick, threads=threads, quiet=quiet, rows=rows,
                           smoke=(quick and baseline is None) if smoke is None else smoke)
    run, checked = collect_checked(options, baseline, tolerance, str(check))
    paths = write_bench(run, out, checked)
    show = console().print
    show(bench_table(run.rows, title=f"geobench bench {stage}{' --quick' if quick else ''}"))
    counts = {s: sum(r.status == s for r in run.rows) for s in ("pass", "miss", "info", "error")}
    show(", ".join(f"{n} {s}" for s, n in counts.items())
         + f"; wrote {', '.join(str(p) for p in paths)}")
    load = max(run.meta["loadavg_start"], run.meta["loadavg_end"])
    if load > run.meta["cpu_count"]:
        hint = ("; with more than one thread small operations can slow down many times over, "
                "`--threads 1` is the steadiest on a shared machine"
                if run.meta["threads"] > 1 else "")
        typer.echo(f"warning: the machine was busy (load average {load:g} on "
                   f"{run.meta['cpu_count']} CPUs); ratios are noisier than usual{hint}", err=True)
    problems = [f"stage {r.stage}: {r.error}" for r in run.errors]
    if checked is not None:
        verdicts = [line.verdict for line in checked.lines]
        if any(v not in ("ok", "skipped") for v in verdicts):
            show(check_table(checked))
        show(f"regression check against {check}: " + ", ".join(
            f"{verdicts.count(v)} {v}" for v in ("ok", "improved", "noisy", "new", "skipped",
                                                 "unconfirmed", "regression", "missing")
            if v in verdicts))
        problems += [f"{line.describe()} (baseline {check})" for line in checked.failed]
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
