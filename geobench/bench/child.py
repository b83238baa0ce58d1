"""Run one piece of benchmark work in a fresh interpreter: `python -m geobench.bench.child`.

A plain subprocess (not multiprocessing) so it works whatever the parent's __main__ is
(a console script, `python -c`, stdin, a notebook). The work and its result travel as
pickle files in a private temporary folder; stdout and stderr are inherited, so progress
bars still show.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any


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
        proc = subprocess.Popen([sys.executable, "-m", "geobench.bench.child", str(job_path),
                                 str(result_path)], env=env, stdin=subprocess.DEVNULL)
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


def _work(job: tuple) -> Any:
    from geobench.bench import current_rss, peak_rss, reset_peak_rss, set_threads

    kind = job[0]
    if kind == "stage":
        from geobench.bench.collect import _stage_rows
        from geobench.progress import set_quiet

        _, stage, module_name, quick, n_threads, quiet, rows_re = job
        set_quiet(quiet)
        set_threads(n_threads)
        return _stage_rows(stage, module_name, quick, rows_re)
    if kind == "call":
        _, fn, args, kwargs, n_threads = job
        set_threads(n_threads)
        exact = reset_peak_rss()
        baseline = current_rss()
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = time.perf_counter() - start
        return result, baseline, peak_rss(), exact, seconds
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
