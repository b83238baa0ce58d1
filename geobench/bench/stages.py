"""The benchmark stages and how one stage runs in this process.

`geobench bench` runs each stage in STAGES: it imports the stage's modules
(STAGE_MODULES) and calls each one's `run(quick: bool) -> list[dict]` (rows in the
contract of `geobench.bench.rows`). `stage_rows` never raises: a missing, broken or
malformed module becomes one error row and the other modules still run.
"""
from __future__ import annotations

import importlib
import os
import traceback

from geobench.bench.rows import BenchRow

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


def selected(case: str) -> bool:
    """Whether this case is wanted: $GEOBENCH_BENCH_ROWS (set by `--rows REGEX`) searched in
    the case name, else everything. Stages skip unwanted cases before measuring them, so a
    re-measurement or a narrowed run costs only the rows it needs."""
    pattern = os.environ.get("GEOBENCH_BENCH_ROWS", "")
    if not pattern:
        return True
    import re

    return re.search(pattern, case) is not None


def stage_rows(stage: str, modules: str | tuple[str, ...], quick: bool,
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
            more, tb = module_rows(stage, module_name, quick)
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


def module_rows(stage: str, module_name: str, quick: bool) -> tuple[list[BenchRow], str]:
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
