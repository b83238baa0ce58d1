"""Benchmarks: every stage measured against its floor in the same run, reported as ratios.

Absolute times on a shared machine are noise; a ratio against a floor measured in the same
process, on the same threads, moments apart, is not. `geobench bench` imports
`geobench.bench.<stage>` for each stage in STAGES and calls its `run(quick: bool)`.

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

Helpers shared by all stages: `timeit` (best of N), `peak_rss_subprocess` (a function's
peak resident memory in a fresh child process), `set_threads` / `bench_threads` (floor and
measurement on the same thread count). Nothing heavy is imported at module level.
"""
from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STAGES: tuple[str, ...] = ("prep", "mine", "eval", "models", "train", "synthetic")
# The issue that owns each stage module, named in the error row when a module is missing.
STAGE_ISSUES: dict[str, int] = {"prep": 3, "mine": 3, "eval": 5, "models": 6, "train": 7,
                                "synthetic": 2}
# The modules whose rows make up each stage, in order; tests point entries at fake modules.
STAGE_MODULES: dict[str, str | tuple[str, ...]] = {s: f"geobench.bench.{s}" for s in STAGES}
STAGE_MODULES["models"] = ("geobench.bench.models", "geobench.bench.deform", "geobench.bench.rerank")
STAGE_MODULES["eval"] = ("geobench.bench.eval", "geobench.bench.eval_phases", "geobench.bench.ann",
                         "geobench.bench.eval_peers", "geobench.bench.stream")
STAGE_MODULES["train"] = ("geobench.bench.train", "geobench.bench.train_peer", "geobench.bench.loader")

FIELDS: tuple[str, ...] = ("stage", "case", "metric", "value", "floor", "ratio", "unit",
                           "target")
MB = 1024 * 1024
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


# --------------------------------------------------------------------------- rows


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


# --------------------------------------------------------------------------- threads


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


# --------------------------------------------------------------------------- time


def time_samples(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1,
                 number: int = 1) -> list[float]:
    """Seconds per call of fn() for each of `repeat` rounds (after `warmup` untimed calls)."""
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


# --------------------------------------------------------------------------- selection


def selected(case: str) -> bool:
    """Whether this case is wanted: $GEOBENCH_BENCH_ROWS (set by `--rows REGEX`) searched in
    the case name, else everything. Stages skip unwanted cases before measuring them, so a
    re-measurement or a narrowed run costs only the rows it needs."""
    pattern = os.environ.get("GEOBENCH_BENCH_ROWS", "")
    if not pattern:
        return True
    import re

    return re.search(pattern, case) is not None


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


# --------------------------------------------------------------------------- memory


def _status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss() -> int:
    """Resident set size of this process in bytes (0 where /proc is unavailable)."""
    kb = _status_kb("VmRSS")
    return (kb or 0) * 1024


def peak_rss() -> int:
    """Peak resident set size of this process in bytes (VmHWM, else getrusage)."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class PeakMemory:
    """What `peak_rss_subprocess` measured, in bytes."""

    result: Any
    baseline: int  # RSS right before the call (interpreter, imports, arguments)
    peak: int  # peak RSS of the child during the call
    exact: bool  # False where the peak could not be reset (it may include import spikes)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def delta(self) -> int:
        """Memory the call itself added on top of the baseline."""
        return max(0, self.peak - self.baseline)


def peak_rss_subprocess(fn: Callable[..., Any], *args: Any, n_threads: int | None = None,
                        timeout: float | None = None, **kwargs: Any) -> PeakMemory:
    """Run fn(*args, **kwargs) in a fresh interpreter; return its result and peak memory.

    fn must be importable by name (a module-level function, not one defined in __main__)
    and its arguments and result picklable. The child's peak is reset right before the
    call, so `delta` is what fn allocated on top of the imported libraries and the
    unpickled arguments. Raises RuntimeError (ChildFailed) if fn raises, the child dies
    (e.g. killed for memory) or it exceeds `timeout` seconds.
    """
    from geobench.bench.child import run_in_child

    job = ("call", fn, args, kwargs, n_threads or bench_threads())
    result, baseline, peak, exact, seconds = run_in_child(job, timeout=timeout)
    return PeakMemory(result=result, baseline=baseline, peak=peak, exact=exact, seconds=seconds)


__all__ = [
    "STAGES", "STAGE_ISSUES", "STAGE_MODULES", "FIELDS", "MB", "BenchRow", "PeakMemory",
    "parse_target", "make_row", "bench_threads", "set_threads", "threads", "timeit",
    "time_samples", "interleaved", "Timings", "cpu_clock", "selected", "planted", "current_rss", "peak_rss", "reset_peak_rss",
    "peak_rss_subprocess",
]
