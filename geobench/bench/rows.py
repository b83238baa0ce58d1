"""Benchmark rows: the contract every stage's `run(quick)` returns, validated.

Row contract (one dict per measurement; `make_row` builds one):

    stage   str         one of STAGES
    case    str         what was measured, with its size: "polar 750px workers=2"
    metric  str         "time", "throughput", "peak_rss", "wait_fraction", ...
    value   float       the measured value, in `unit`
    floor   float|None  the floor measured in the same run, same unit (None: no floor)
    ratio   float|None  value / floor (filled in from value and floor when omitted)
    unit    str         "s", "img/s", "MB", "q/s", "fraction", ...
    target  str         the demand on the ratio, with its direction:
                        "<=1.3"  ratio at most 1.3 (lower is better; times, memory)
                        ">=0.85" ratio at least 0.85 (higher is better; throughputs)
                        "<=" or ">=" direction only: regression-checked, no pass/fail bound
                        ""       informational: neither checked nor judged

Any other keys (workers, n, note, device ...) are kept, as "key=value" pairs, in the
`params` column. A row without a floor is judged and regression-checked on its value
instead of its ratio, so give floorless rows a direction only when the value means the
same on every machine (a fraction, a memory bound), never for absolute seconds.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FIELDS: tuple[str, ...] = ("stage", "case", "metric", "value", "floor", "ratio", "unit",
                           "target")


def parse_target(target: str | None) -> tuple[str | None, float | None]:
    """Split "<=1.3" into ("<=", 1.3); "" gives (None, None); ">=" gives (">=", None)."""
    text = (target or "").strip().replace("≤", "<=").replace("≥", ">=")
    if not text:
        return None, None
    op = text[:2]
    if op not in ("<=", ">="):
        raise ValueError(f"target {target!r} must start with '<=' or '>=' (e.g. '<=1.3')")
    rest = text[2:].strip()
    if not rest:
        return op, None
    try:
        return op, float(rest)
    except ValueError:
        raise ValueError(f"target {target!r}: {rest!r} is not a number") from None


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class BenchRow:
    """One measurement, validated; `status` is pass / miss / info / error."""

    stage: str
    case: str
    metric: str
    value: float | None
    floor: float | None
    ratio: float | None
    unit: str
    target: str
    params: str = ""
    error: str = ""
    # per-repetition judged numbers (ratio, else value), each from a floor and a measurement
    # timed next to each other; the regression gate's evidence (empty: one measurement)
    samples: tuple[float, ...] = ()
    # a peer row compares geobench with what users would run instead (named here):
    # value = geobench, floor = the peer, ratio = geobench ÷ peer
    peer: str = ""

    @property
    def direction(self) -> str | None:
        return parse_target(self.target)[0]

    @property
    def judged(self) -> float | None:
        """The number the target and the regression check look at: ratio, else value."""
        return self.ratio if self.ratio is not None else self.value

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        op, bound = parse_target(self.target)
        x = self.judged
        if op is None or bound is None or x is None:
            return "info"
        return "pass" if (x <= bound if op == "<=" else x >= bound) else "miss"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.stage, self.case, self.metric)

    def as_dict(self) -> dict[str, Any]:
        out = {f: getattr(self, f) for f in FIELDS}
        out.update(status=self.status, params=self.params, error=self.error,
                   samples=" ".join(f"{x:.6g}" for x in self.samples), peer=self.peer)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], stage: str | None = None) -> BenchRow:
        """Validate a stage's dict; raise ValueError naming the bad key."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a row is a {type(data).__name__}, expected a dict")
        missing = [k for k in ("case", "metric", "value") if k not in data]
        if missing:
            raise ValueError(f"row {dict(data)!r} lacks key(s) {', '.join(missing)}")
        row_stage = str(data.get("stage") or stage or "")
        if stage is not None and row_stage != stage:
            raise ValueError(f"row {data.get('case')!r} says stage {row_stage!r}, "
                             f"but came from stage {stage!r}")
        nums: dict[str, float | None] = {}
        for k in ("value", "floor", "ratio"):
            v = data.get(k)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                nums[k] = None
                continue
            if hasattr(v, "item"):  # numpy / torch scalars
                v = v.item()
            if not is_number(v):
                raise ValueError(f"row {data.get('case')!r}: {k}={v!r} is not a finite number")
            nums[k] = float(v)
        if nums["ratio"] is None and nums["value"] is not None and nums["floor"]:
            nums["ratio"] = nums["value"] / nums["floor"]
        target = str(data.get("target") or "")
        parse_target(target)
        samples = data.get("samples") or ()
        if isinstance(samples, str):
            samples = samples.split()
        try:
            samples = tuple(float(x) for x in samples)
        except (TypeError, ValueError):
            raise ValueError(f"row {data.get('case')!r}: samples={samples!r} are not numbers") \
                from None
        if not all(math.isfinite(x) for x in samples):
            raise ValueError(f"row {data.get('case')!r}: samples hold a non-finite number")
        extra = {k: v for k, v in data.items()
                 if k not in FIELDS + ("params", "status", "samples", "peer")}
        params = str(data.get("params") or "")
        if extra:
            params = ";".join(filter(None, [params] + [f"{k}={v}" for k, v in extra.items()]))
        return cls(stage=row_stage, case=str(data["case"]), metric=str(data["metric"]),
                   value=nums["value"], floor=nums["floor"], ratio=nums["ratio"],
                   unit=str(data.get("unit") or ""), target=target, params=params,
                   samples=samples, peer=str(data.get("peer") or ""))

    @classmethod
    def failure(cls, stage: str, message: str, case: str = "-") -> BenchRow:
        return cls(stage=stage, case=case, metric="error", value=None, floor=None, ratio=None,
                   unit="", target="", error=" ".join(message.split()))


def make_row(stage: str, case: str, metric: str, value: float, floor: float | None,
             unit: str, target: str = "", samples: Sequence[float] | None = None,
             peer: str = "", **params: Any) -> dict[str, Any]:
    """A row dict in the contract above; ratio = value / floor when there is a floor.

    `samples`: the judged number of each repetition (per-pair ratios from
    `Timings.ratios`); the row's ratio is then their median, so the printed ratio is the
    centre the regression gate compares.
    """
    ratio = value / floor if floor not in (None, 0) and value is not None else None
    if samples:
        samples = [float(x) for x in samples]
        if floor is not None:
            ratio = statistics.median(samples)
    row = dict(stage=stage, case=case, metric=metric, value=value, floor=floor, ratio=ratio,
               unit=unit, target=target, samples=list(samples or ()), peer=peer)
    row.update(params)
    return row
