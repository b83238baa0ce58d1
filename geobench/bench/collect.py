"""Run the stage benchmarks and gather their rows.

Each stage runs in its own fresh child process by default: a stage that crashes, hangs,
leaks memory or changes thread settings cannot disturb the others, and memory figures
start from a clean interpreter. A stage whose module is missing, raises or returns
malformed rows becomes one error row; the other stages still run.
"""
from __future__ import annotations

import importlib
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from geobench.bench import STAGE_ISSUES, STAGE_MODULES, STAGES, BenchRow, bench_threads, set_threads
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


def _stage_rows(stage: str, modules: str | tuple[str, ...], quick: bool,
                rows_re: str | None = None) -> tuple[list[BenchRow], str]:
    """Run every module of one stage here; never raises (failures become error rows).

    With `rows_re`, stages skip the cases it does not match (`geobench.bench.selected`),
    and rows of modules that measure everything anyway are dropped here.
    """
    import re

    rows: list[BenchRow] = []
    tracebacks = []
    previous = os.environ.get("GEOBENCH_BENCH_ROWS")
    os.environ["GEOBENCH_BENCH_ROWS"] = rows_re or ""
    try:
        for module_name in (modules,) if isinstance(modules, str) else modules:
            more, tb = _module_rows(stage, module_name, quick)
            rows += [r for r in more if not rows_re or r.status == "error"
                     or re.search(rows_re, r.case)]
            if tb:
                tracebacks.append(tb)
    finally:
        if previous is None:
            os.environ.pop("GEOBENCH_BENCH_ROWS", None)
        else:
            os.environ["GEOBENCH_BENCH_ROWS"] = previous
    seen: set[tuple[str, str, str]] = set()
    for row in list(rows):
        if row.status != "error" and row.key in seen:
            rows.append(BenchRow.failure(stage, f"two rows measure {'/'.join(row.key)}; each "
                                                f"(stage, case, metric) must be unique, so "
                                                f"rename one case"))
        seen.add(row.key)
    return rows, "\n".join(tracebacks)


def _module_rows(stage: str, module_name: str, quick: bool) -> tuple[list[BenchRow], str]:
    """Import and run one benchmark module; never raises (failures become one error row)."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            path = module_name.replace(".", "/") + ".py"
            issue = STAGE_ISSUES.get(stage)
            owner = f" (issue {issue})" if issue else ""
            return [BenchRow.failure(stage, f"benchmark module {path} is missing{owner}; "
                                            f"it must define run(quick: bool) -> list[dict]")], ""
        return [BenchRow.failure(stage, f"{module_name}: {type(exc).__name__}: {exc}")], \
            traceback.format_exc()
    except BaseException as exc:  # a broken module must not take the others down
        return [BenchRow.failure(stage, f"importing {module_name} failed: "
                                        f"{type(exc).__name__}: {exc}")], traceback.format_exc()
    run = getattr(module, "run", None)
    if not callable(run):
        return [BenchRow.failure(stage, f"{module_name} has no run(quick: bool) function")], ""
    try:
        raw = run(quick)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        last = traceback.extract_tb(exc.__traceback__)[-1]
        where = f" at {os.path.basename(last.filename)}:{last.lineno}"
        return [BenchRow.failure(stage, f"{type(exc).__name__}: {exc}{where}")], \
            traceback.format_exc()
    try:
        if raw is None or isinstance(raw, (str, bytes, dict)):
            raise ValueError(f"run() returned {type(raw).__name__}, expected a list of dicts")
        rows = [BenchRow.from_dict(r, stage) for r in raw]
        if not rows and not os.environ.get("GEOBENCH_BENCH_ROWS"):  # --rows may skip all
            raise ValueError("run() returned no rows")
    except ValueError as exc:
        return [BenchRow.failure(stage, f"{module_name}.run returned a malformed row: {exc}")], ""
    return rows, ""


def _run_isolated(stage: str, module_name: str | tuple[str, ...], options: BenchOptions,
                  n_threads: int) -> tuple[list[BenchRow], str]:
    from geobench.bench.child import ChildFailed, run_in_child

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
            rows, tb = _stage_rows(stage, module_name, options.quick, options.rows)
        seconds = time.perf_counter() - start
        results.append(StageResult(stage, tuple(rows), seconds, tb))
        if not options.quiet:
            state = (f"FAILED (details: bench.h5 /stages/{stage})" if results[-1].failed
                     else f"{len(rows)} rows")
            print(f"bench: {stage} {state} in {seconds:.1f} s", file=sys.stderr, flush=True)
    meta["loadavg_end"] = _loadavg()
    return BenchRun(tuple(results), meta)
