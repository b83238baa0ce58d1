"""Compare a benchmark run with a stored baseline: the speed half of the CI job.

A row regresses when its judged number (ratio, or value for floorless rows) moved in the
wrong direction (from its target, "<=" or ">=") by more than the tolerance, as a fraction
of the baseline number. The baseline CSV is a bench.csv, optionally with a `tolerance`
column that sets the allowed fraction per row (from measured run-to-run noise); a
`--tolerance` given on the command line overrides all of them.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from geobench.bench import BenchRow, parse_target
from geobench.errors import DataError, SchemaError, UsageError

DEFAULT_TOLERANCE = 0.25
REQUIRED = ("stage", "case", "metric", "value", "floor", "ratio", "unit", "target")


@dataclass(frozen=True)
class BaselineRow:
    row: BenchRow
    tolerance: float | None  # per-row allowance; None: the run's default


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
    verdict: str  # ok | improved | regression | missing | new | skipped

    @property
    def failed(self) -> bool:
        return self.verdict in ("regression", "missing")

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
        if self.change is not None:
            word = "worse" if self.change > 0 else "better"
            what += f" ({abs(self.change):.0%} {word}, tolerance {self.tolerance:.0%})"
        return what


@dataclass(frozen=True)
class CheckResult:
    baseline_path: str
    lines: tuple[CheckLine, ...]

    @property
    def failed(self) -> list[CheckLine]:
        return [line for line in self.lines if line.failed]


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
                           params=rec.get("params") or "")
            if row.key in seen:
                raise SchemaError(f"{path}:{line}: duplicate row {'/'.join(row.key)}; each "
                                  f"(stage, case, metric) may appear once")
            seen.add(row.key)
            tol = _number(rec.get("tolerance") or "", path, line, "tolerance")
            if tol is not None and tol < 0:
                raise SchemaError(f"{path}:{line}: tolerance {tol} is negative; use a fraction "
                                  f"such as 0.25")
            out.append(BaselineRow(row, tol))
    return out


def _change(direction: str, base: float, cur: float) -> float:
    """Relative change of cur against base, positive when it got worse."""
    diff = cur - base if direction == "<=" else base - cur
    return diff / abs(base) if base != 0 else diff


def check_rows(current: list[BenchRow], baseline: list[BaselineRow], tolerance: float | None = None,
               baseline_path: str = "", default: float = DEFAULT_TOLERANCE) -> CheckResult:
    """Judge every baseline row of the stages that ran; rows only in `current` are 'new'."""
    if tolerance is not None and (not math.isfinite(tolerance) or tolerance < 0):
        raise UsageError(f"--tolerance {tolerance} must be a fraction >= 0, e.g. 0.25 for 25%")
    stages_run = {r.stage for r in current}
    now = {r.key: r for r in current if r.status != "error"}
    lines = []
    for entry in baseline:
        base = entry.row
        if base.stage not in stages_run:
            continue
        tol = tolerance if tolerance is not None else (
            entry.tolerance if entry.tolerance is not None else default)
        cur = now.get(base.key)
        if cur is None:
            lines.append(CheckLine(base.stage, base.case, base.metric, base.target,
                                   base.judged, None, None, tol, "missing"))
            continue
        direction = cur.direction or base.direction
        b, c = base.judged, cur.judged
        if direction is None or b is None or c is None:
            lines.append(CheckLine(base.stage, base.case, base.metric, cur.target, b, c, None,
                                   tol, "skipped"))
            continue
        change = _change(direction, b, c)
        verdict = "regression" if change > tol else ("improved" if change < -tol else "ok")
        lines.append(CheckLine(base.stage, base.case, base.metric, cur.target, b, c, change,
                               tol, verdict))
    known = {e.row.key for e in baseline}
    for row in current:
        if row.status != "error" and row.key not in known:
            lines.append(CheckLine(row.stage, row.case, row.metric, row.target, None, row.judged,
                                   None, tolerance if tolerance is not None else default, "new"))
    return CheckResult(str(baseline_path), tuple(lines))
