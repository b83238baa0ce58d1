"""Run the stage benchmarks and gather their rows.

Each stage runs in its own fresh child process by default: a stage that crashes, hangs,
leaks memory or changes thread settings cannot disturb the others, and memory figures
start from a clean interpreter. A stage whose module is missing, raises or returns
malformed rows becomes one error row; the other stages still run.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from geobench.bench.child import ChildFailed, run_in_child
from geobench.bench.rows import BenchRow
from geobench.bench.stages import STAGE_MODULES, STAGES, stage_rows
from geobench.bench.threadcount import bench_threads, set_threads
from geobench.bench.timing import SMOKE_ENV
from geobench.errors import UnknownNameError


@dataclass(frozen=True)
class BenchOptions:
    """What `geobench bench` runs."""

    stages: tuple[str, ...] = STAGES
    quick: bool = False
    threads: int | None = None  # None: bench_threads() (all CPUs available)
    isolate: bool = True  # one child process per stage
    timeout_s: float | None = None  # per stage, isolated mode only
    quiet: bool = False
    rows: str | None = None  # regular expression: measure only cases it matches (--rows)
    smoke: bool = False  # one round per case (geobench.bench.smoke): --quick without --check


@dataclass(frozen=True)
class StageResult:
    stage: str
    rows: tuple[BenchRow, ...]
    seconds: float
    traceback: str = ""

    @property
    def failed(self) -> bool:
        return any(r.status == "error" for r in self.rows)


@dataclass(frozen=True)
class BenchRun:
    stages: tuple[StageResult, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> list[BenchRow]:
        return [r for s in self.stages for r in s.rows]

    @property
    def errors(self) -> list[BenchRow]:
        return [r for r in self.rows if r.status == "error"]


def resolve_stages(text: str) -> tuple[str, ...]:
    """'all' → every stage; 'eval' or 'prep,eval' → those, in STAGES order."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names or "all" in names:
        return STAGES
    for name in names:
        if name not in STAGES:
            import difflib

            close = difflib.get_close_matches(name, STAGES, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UnknownNameError(f"unknown benchmark stage {name!r}{hint}; choose from "
                                   f"{', '.join(STAGES)} or all")
    return tuple(s for s in STAGES if s in names)


def _run_isolated(stage: str, module_name: str | tuple[str, ...], options: BenchOptions,
                  n_threads: int) -> tuple[list[BenchRow], str]:
    job = ("stage", stage, module_name, options.quick, n_threads, options.quiet, options.rows)
    try:
        return run_in_child(job, timeout=options.timeout_s)
    except ChildFailed as exc:
        message = str(exc)
        return [BenchRow.failure(stage, f"stage {stage}: {message.splitlines()[0]}")], message


def machine_meta(options: BenchOptions, n_threads: int) -> dict[str, Any]:
    """Provenance stored beside the rows (versions without importing the libraries)."""
    from importlib import metadata

    import geobench

    versions = {}
    for dist in ("torch", "numpy", "faiss-cpu", "opencv-python-headless", "h5py"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = ""
    return {
        "schema": "geobench.bench/1",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "geobench": getattr(geobench, "__version__", ""),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count() or 0,
        "threads": n_threads,
        "quick": options.quick,
        "smoke": options.smoke,
        "stages": ",".join(options.stages),
        "rows": options.rows or "",
        "isolated": options.isolate,
        "versions": versions,
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> float:
    """1-minute load average (0 where unknown): a busy machine makes every ratio noisier."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return 0.0


def collect(options: BenchOptions) -> BenchRun:
    """Run the chosen stages one after the other and return every row, errors included."""
    previous = os.environ.get(SMOKE_ENV)
    os.environ[SMOKE_ENV] = "1" if options.smoke else ""  # stage processes inherit it
    try:
        return _collect(options)
    finally:
        if previous is None:
            os.environ.pop(SMOKE_ENV, None)
        else:
            os.environ[SMOKE_ENV] = previous


def _collect(options: BenchOptions) -> BenchRun:
    n_threads = options.threads or bench_threads()
    meta = machine_meta(options, n_threads)
    results = []
    for stage in options.stages:
        if not options.quiet:
            print(f"bench: {stage} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        module_name = STAGE_MODULES.get(stage, f"geobench.bench.{stage}")
        if options.isolate:
            rows, tb = _run_isolated(stage, module_name, options, n_threads)
        else:
            set_threads(n_threads)
            rows, tb = stage_rows(stage, module_name, options.quick, options.rows)
        seconds = time.perf_counter() - start
        results.append(StageResult(stage, tuple(rows), seconds, tb))
        if not options.quiet:
            state = (f"FAILED (details: bench.h5 /stages/{stage})" if results[-1].failed
                     else f"{len(rows)} rows")
            print(f"bench: {stage} {state} in {seconds:.1f} s", file=sys.stderr, flush=True)
    meta["loadavg_end"] = _loadavg()
    return BenchRun(tuple(results), meta)
