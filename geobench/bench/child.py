"""Run one piece of benchmark work in a fresh interpreter: a stage (`geobench bench` isolates
each one) or a function whose peak memory is measured (`peak_rss_subprocess`).

A plain subprocess (not multiprocessing) so it works whatever the parent's __main__ is
(a console script, `python -c`, stdin, a notebook). The work and its result travel as
pickle files in a private temporary folder (mkdtemp: 0700, made by this run, never a
user's folder; the job holds functions, which only pickle can carry); stdout and stderr
are inherited, so progress bars still show.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geobench.bench.memory import peak_during
from geobench.bench.threadcount import bench_threads, set_threads

# Runs main() without `-m`: that would import this module a second time as __main__, after
# the package face (which imports it) already did.
ENTRY = "import sys; from geobench.bench.child import main; sys.exit(main(sys.argv[1:]))"


class ChildFailed(RuntimeError):
    """The child died, timed out, or the work raised (message says which)."""


def run_in_child(job: tuple, timeout: float | None = None) -> Any:
    """Run `job` (see `_work`) in a new interpreter and return its result."""
    with tempfile.TemporaryDirectory(prefix="geobench-bench-") as tmp:
        job_path, result_path = Path(tmp) / "job.pkl", Path(tmp) / "result.pkl"
        with open(job_path, "wb") as handle:
            pickle.dump(job, handle, protocol=pickle.HIGHEST_PROTOCOL)
        env = dict(os.environ)
        # The child must import what the parent can (tests put fake stage modules on sys.path).
        paths = [p for p in sys.path if p] + env.get("PYTHONPATH", "").split(os.pathsep)
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
        proc = subprocess.Popen([sys.executable, "-c", ENTRY, str(job_path), str(result_path)],
                                env=env, stdin=subprocess.DEVNULL)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise ChildFailed(f"did not finish within {timeout:g} s and was stopped") from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if not result_path.exists():
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            raise ChildFailed(f"its process died with {how} (a crash, or killed for memory)")
        with open(result_path, "rb") as handle:
            status, payload = pickle.load(handle)
    if status == "error":
        raise ChildFailed(payload)
    return payload


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
    job = ("call", fn, args, kwargs, n_threads or bench_threads())
    result, baseline, peak, exact, seconds = run_in_child(job, timeout=timeout)
    return PeakMemory(result=result, baseline=baseline, peak=peak, exact=exact, seconds=seconds)


def _work(job: tuple) -> Any:
    kind = job[0]
    if kind == "stage":
        from geobench.bench.stages import stage_rows
        from geobench.progress import set_quiet

        _, stage, module_name, quick, n_threads, quiet, rows_re = job
        set_quiet(quiet)
        set_threads(n_threads)
        return stage_rows(stage, module_name, quick, rows_re)
    if kind == "call":
        _, fn, args, kwargs, n_threads = job
        set_threads(n_threads)
        with peak_during() as mem:
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            seconds = time.perf_counter() - start
        return result, mem.base, mem.peak, mem.exact, seconds
    raise ValueError(f"unknown job kind {kind!r}")


def main(argv: list[str]) -> int:
    job_path, result_path = argv
    try:
        with open(job_path, "rb") as handle:
            job = pickle.load(handle)
        outcome: tuple = ("ok", _work(job))
    except BaseException as exc:  # handed to the parent, which decides what to show
        outcome = ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    tmp = result_path + ".tmp"
    with open(tmp, "wb") as handle:
        pickle.dump(outcome, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, result_path)
    return 0
