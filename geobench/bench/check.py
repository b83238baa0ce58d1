"""Compare a benchmark run with a stored baseline: the speed half of the CI job.

Each row carries several repetitions (`samples`), each a floor and a measurement timed
next to each other; a baseline row carries the samples of several whole runs
(`benchmarks/make_baseline.py`). A row regresses when, in the wrong direction of its
target ("<=" or ">="), the median moved by more than its factor (1 + tolerance) AND by
more than the run-to-run noise allows (`geobench.bench.stats`). `collect_checked` then
measures each suspected row again in a fresh process and fails only if the second measurement
regresses too ("unconfirmed" otherwise). Rows whose noise alone exceeds the factor are
reported as "noisy" with the smallest change they can detect.

The baseline CSV is a bench.csv with optional columns `tolerance` (per-row factor - 1)
and `samples` (repetitions, runs separated by "|"); a `--tolerance` given on the command
line overrides every row's. A baseline without samples is one run of one repetition: its
rows are gated by the factor alone.
"""
from __future__ import annotations

import csv
import math
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from geobench.bench.collect import BenchOptions, BenchRun, collect
from geobench.bench.rows import BenchRow, parse_target
from geobench.bench.stats import compare, parse_samples
from geobench.errors import DataError, SchemaError, UsageError

DEFAULT_TOLERANCE = 0.25
REQUIRED = ("stage", "case", "metric", "value", "floor", "ratio", "unit", "target")
FAILING = ("regression", "missing")


@dataclass(frozen=True)
class BaselineRow:
    row: BenchRow
    tolerance: float | None  # per-row allowance; None: the run's default
    runs: tuple[tuple[float, ...], ...] = ()  # samples per baseline run

    def samples(self) -> list[list[float]]:
        if self.runs:
            return [list(r) for r in self.runs]
        return [[self.row.judged]] if self.row.judged is not None else []


@dataclass(frozen=True)
class CheckLine:
    stage: str
    case: str
    metric: str
    target: str
    baseline: float | None
    current: float | None
    change: float | None  # relative change, positive = worse
    tolerance: float
    verdict: str  # ok | improved | noisy | regression | unconfirmed | missing | new | skipped
    detectable: float | None = None  # smallest worsening the row's noise lets the gate see
    p_value: float | None = None  # Mann-Whitney one-sided p for "worse"
    n_baseline: int = 0
    n_current: int = 0
    again: float | None = None  # the re-measured median of a suspected regression

    @property
    def failed(self) -> bool:
        return self.verdict in FAILING

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.stage, self.case, self.metric)

    def describe(self) -> str:
        """One line for the terminal: what moved, by how much, against which allowance."""
        def g(x: float | None) -> str:
            return "absent" if x is None else f"{x:.3g}"

        if self.verdict == "missing":
            return (f"missing {self.stage}/{self.case}/{self.metric}: in the baseline but not "
                    f"measured now (same --quick setting as the baseline? a renamed case needs "
                    f"a new baseline)")
        what = f"{self.verdict} {self.stage}/{self.case}/{self.metric}: baseline " \
               f"{g(self.baseline)}, now {g(self.current)}"
        if self.again is not None:
            what += f", again {g(self.again)}"
        if self.change is not None:
            word = "worse" if self.change > 0 else "better"
            what += f" ({abs(self.change):.0%} {word}, tolerance {self.tolerance:.0%}"
            if self.detectable:
                what += f", noise allows {self.detectable:.0%}"
            if self.p_value is not None:
                what += f", p={self.p_value:.2g}"
            what += ")"
        return what


@dataclass(frozen=True)
class CheckResult:
    baseline_path: str
    lines: tuple[CheckLine, ...]

    @property
    def failed(self) -> list[CheckLine]:
        return [line for line in self.lines if line.failed]

    @property
    def suspects(self) -> list[CheckLine]:
        return [line for line in self.lines if line.verdict == "regression"]


def _number(text: str, path: Path, line: int, column: str) -> float | None:
    text = (text or "").strip()
    if text == "" or text.lower() == "nan":
        return None
    try:
        value = float(text)
    except ValueError:
        raise SchemaError(f"{path}:{line}: column {column!r} holds {text!r}, not a number; "
                          f"regenerate the baseline with `geobench bench all --quick`") from None
    if not math.isfinite(value):
        raise SchemaError(f"{path}:{line}: column {column!r} is {text!r}; use a finite number "
                          f"or leave it empty")
    return value


def read_baseline(path: str | Path) -> list[BaselineRow]:
    """Read a bench.csv (plus optional `tolerance` column) as a baseline; errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"baseline {path} does not exist; create one with `geobench bench all "
                        f"--quick --out DIR` and copy DIR/bench.csv there")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise SchemaError(f"{path}:1: baseline lacks column(s) {', '.join(missing)}; it must "
                              f"be a bench.csv written by `geobench bench`")
        out, seen = [], set()
        for line, rec in enumerate(reader, start=2):
            if (rec.get("status") or "") == "error":
                continue  # a stage that failed when the baseline was taken has nothing to hold
            try:
                parse_target(rec["target"])
            except ValueError as exc:
                raise SchemaError(f"{path}:{line}: {exc}") from None
            row = BenchRow(stage=rec["stage"], case=rec["case"], metric=rec["metric"],
                           value=_number(rec["value"], path, line, "value"),
                           floor=_number(rec["floor"], path, line, "floor"),
                           ratio=_number(rec["ratio"], path, line, "ratio"),
                           unit=rec["unit"], target=rec["target"] or "",
                           params=rec.get("params") or "", peer=rec.get("peer") or "")
            if row.key in seen:
                raise SchemaError(f"{path}:{line}: duplicate row {'/'.join(row.key)}; each "
                                  f"(stage, case, metric) may appear once")
            seen.add(row.key)
            tol = _number(rec.get("tolerance") or "", path, line, "tolerance")
            if tol is not None and tol < 0:
                raise SchemaError(f"{path}:{line}: tolerance {tol} is negative; use a fraction "
                                  f"such as 0.25")
            try:
                runs = parse_samples(rec.get("samples") or "")
            except ValueError:
                raise SchemaError(f"{path}:{line}: column 'samples' holds "
                                  f"{rec.get('samples')!r}; expected numbers separated by "
                                  f"spaces, runs by '|'") from None
            if any(not math.isfinite(x) for run in runs for x in run):
                raise SchemaError(f"{path}:{line}: column 'samples' holds a non-finite number")
            out.append(BaselineRow(row, tol, tuple(tuple(r) for r in runs)))
    return out


def _judge(base: BaselineRow, cur: BenchRow, tol: float) -> CheckLine:
    b = base.row
    direction = cur.direction or b.direction
    runs = base.samples()
    now = list(cur.samples) or ([cur.judged] if cur.judged is not None else [])
    if direction is None or not runs or not now:
        return CheckLine(b.stage, b.case, b.metric, cur.target, b.judged, cur.judged, None,
                         tol, "skipped")
    comp = compare(direction, runs, now)
    return CheckLine(b.stage, b.case, b.metric, cur.target, comp.baseline, comp.current,
                     comp.change, tol, comp.verdict(1 + tol), comp.detectable or None,
                     comp.p_worse, comp.n_baseline, comp.n_current)


def _wanted(key: tuple[str, str, str], rows: str | None) -> bool:
    return not rows or re.search(rows, key[1]) is not None


def check_rows(current: list[BenchRow], baseline: list[BaselineRow], tolerance: float | None = None,
               baseline_path: str = "", default: float = DEFAULT_TOLERANCE,
               rows: str | None = None) -> CheckResult:
    """Judge every baseline row of the stages that ran; rows only in `current` are 'new'.

    `rows`: the `--rows` regular expression the run was narrowed to; baseline rows whose
    case it does not match are not expected.
    """
    if tolerance is not None and (not math.isfinite(tolerance) or tolerance < 0):
        raise UsageError(f"--tolerance {tolerance} must be a fraction >= 0, e.g. 0.25 for 25%")
    stages_run = {r.stage for r in current}
    now = {r.key: r for r in current if r.status != "error"}
    lines = []
    for entry in baseline:
        base = entry.row
        if base.stage not in stages_run or not _wanted(base.key, rows):
            continue
        tol = tolerance if tolerance is not None else (
            entry.tolerance if entry.tolerance is not None else default)
        cur = now.get(base.key)
        if cur is None:
            lines.append(CheckLine(base.stage, base.case, base.metric, base.target,
                                   base.judged, None, None, tol, "missing"))
            continue
        lines.append(_judge(entry, cur, tol))
    known = {e.row.key for e in baseline}
    for row in current:
        if row.status != "error" and row.key not in known:
            lines.append(CheckLine(row.stage, row.case, row.metric, row.target, None, row.judged,
                                   None, tolerance if tolerance is not None else default, "new"))
    return CheckResult(str(baseline_path), tuple(lines))


def confirm(first: CheckResult, again: CheckResult) -> CheckResult:
    """Keep a suspected regression only if its re-measurement regresses too.

    `again` is the check of a fresh run of the suspected rows alone. A suspect that passes
    the second time becomes "unconfirmed" (reported, not failing); one that was not
    measured again (its stage failed) stays a regression.
    """
    second = {line.key: line for line in again.lines}
    lines = []
    for line in first.lines:
        redo = second.get(line.key) if line.verdict == "regression" else None
        if redo is not None and redo.current is not None:
            verdict = "regression" if redo.verdict == "regression" else "unconfirmed"
            line = replace(line, verdict=verdict, again=redo.current)
        lines.append(line)
    return CheckResult(first.baseline_path, tuple(lines))


def gated_pattern(baseline: list[BaselineRow]) -> str:
    """A `--rows` regular expression for the cases the gate can fail on: those with a row
    that has a direction (rows without one are only reported, so are not measured)."""
    cases = sorted({e.row.case for e in baseline if e.row.direction is not None})
    return "|".join(f"^{re.escape(case)}$" for case in cases)


def rows_pattern(lines: list[CheckLine]) -> str:
    """A `--rows` regular expression that matches exactly these lines' cases."""
    return "|".join(f"^{re.escape(case)}$" for case in sorted({line.case for line in lines}))


def collect_checked(options: BenchOptions, baseline: list[BaselineRow] | None,
                    tolerance: float | None = None, baseline_path: str = ""
                    ) -> tuple[BenchRun, CheckResult | None]:
    """Run the stages and, given a baseline, check the rows against it.

    A suspected regression is measured again, alone, in a fresh process, and fails only
    if it regresses again (`confirm`): a run that happened to land on a busy minute must
    not fail the job on its own.
    """
    run = collect(options)
    if baseline is None:
        return run, None
    checked = check_rows(run.rows, baseline, tolerance, baseline_path=baseline_path,
                         rows=options.rows)
    suspects = checked.suspects
    if suspects:
        if not options.quiet:
            print(f"bench: {len(suspects)} suspected regression(s); measuring them again",
                  file=sys.stderr, flush=True)
        pattern = rows_pattern(suspects)
        stages = tuple(s for s in options.stages if s in {x.stage for x in suspects})
        again = collect(replace(options, stages=stages, rows=pattern))
        checked = confirm(checked, check_rows(again.rows, baseline, tolerance,
                                              baseline_path=baseline_path, rows=pattern))
    return run, checked
