"""Rendering tasks in worker processes; the bytes written never depend on the worker count.

A layout lists its tasks in site order as (site number, payload) and gives a module-level
`render(town, payload, job) -> result`. Every task draws from its own seeded RNG and
writes its own files, so any split of the list gives the same files. Worker w takes the
w-th contiguous range of the list, so it builds only the districts its range touches (at
most workers - 1 districts are built twice) and the work is even. Workers are started
with 'spawn' (no inherited threads or locks; portable): a script that calls generate()
with workers > 1 needs the usual `if __name__ == "__main__":` guard.
"""
from __future__ import annotations

import os
import pickle
import queue as queue_mod
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geobench.datasets.synthetic.difficulty import Difficulty
from geobench.datasets.synthetic.options import SyntheticOptions
from geobench.datasets.synthetic.sites import Site
from geobench.progress import bar

MIN_TASKS_PER_WORKER = 100  # below this, start-up and a second district build cost more than they save
MAX_AUTO_WORKERS = 8


@dataclass
class Job:
    opts: SyntheticOptions
    diff: Difficulty
    root: Path
    sites: dict[int, Site]


Task = tuple[int, Any]
Render = Callable[[Any, Any, Job], Any]
JOURNAL_PREFIX = ".journal-"


@dataclass(frozen=True)
class Journal:
    """Finished tasks of an interrupted run, so the re-run renders only the rest.

    After a task's files are written (each atomically), its (task number, result) is
    appended to a per-process file in the partial output folder. A record is therefore
    proof that the task's files are complete; a record cut short by a kill is ignored.
    """

    root: Path
    label: str

    @property
    def stem(self) -> str:
        return JOURNAL_PREFIX + "".join(c if c.isalnum() else "-" for c in self.label)

    def add(self, index: int, result: Any) -> None:
        with open(self.root / f"{self.stem}-{os.getpid()}.pkl", "ab") as handle:
            handle.write(pickle.dumps((index, result)))

    def load(self) -> dict[int, Any]:
        done: dict[int, Any] = {}
        for path in sorted(self.root.glob(f"{self.stem}-*.pkl")):
            with open(path, "rb") as handle:
                while True:
                    try:
                        index, result = pickle.load(handle)
                    except Exception:  # noqa: BLE001 - end of file or a record cut short
                        break
                    done[int(index)] = result
        return done


def remove_journals(root: Path) -> None:
    for path in Path(root).glob(JOURNAL_PREFIX + "*"):
        path.unlink(missing_ok=True)


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(requested: int | None, n_tasks: int) -> int:
    """`requested` processes (None: one per core, while each gets enough tasks to pay off;
    0 or 1: render in this process)."""
    if requested is not None:
        return max(1, min(int(requested), n_tasks))
    return max(1, min(available_cores(), MAX_AUTO_WORKERS, n_tasks // MIN_TASKS_PER_WORKER))


def _run_range(job: Job, tasks: Sequence[tuple[int, Task]], render: Render,
               tick: Callable[[int], Any], journal: Journal | None = None):
    from geobench.datasets.synthetic.scene import build_town

    town, built, out = None, -1, []
    for index, (s, payload) in tasks:
        if s != built:
            town = None   # free the previous district before building the next
            town, built = build_town(job.sites[s], job.opts, job.diff), s
        result = render(town, payload, job)
        if journal is not None:
            journal.add(index, result)
        out.append(result)
        tick(1)
    return out


def run_tasks(job: Job, tasks: Sequence[Task], render: Render, workers: int | None,
              label: str) -> list:
    """render() every task (in `workers` processes when > 1); results in task order.

    Tasks recorded as finished by an interrupted earlier run into the same folder are
    not rendered again (see Journal).
    """
    import multiprocessing as mp

    n = len(tasks)
    journal = Journal(Path(job.root), label)
    done = journal.load()
    pending = [(i, t) for i, t in enumerate(tasks) if i not in done]
    workers = resolve_workers(workers, len(pending))
    if mp.current_process().daemon:   # a daemonic process may not start children
        workers = 1
    with bar(label, n) as progress:
        progress.advance(len(done))
        if workers <= 1 or len(pending) <= 1:
            fresh = _run_range(job, pending, render, progress.advance, journal)
        else:
            fresh = _parallel(job, pending, render, workers, progress, journal)
    done.update(zip((i for i, _ in pending), fresh))
    return [done[i] for i in range(n)]


def _portable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        text = "".join(traceback.format_exception(exc))
        return RuntimeError(f"{type(exc).__name__} in a synthetic-world worker: {text}")


def _worker(results, wid: int, job: Job, tasks: Sequence[tuple[int, Task]], render: Render,
            journal: Journal | None = None, parent: int | None = None) -> None:
    try:
        import cv2

        if parent is not None:
            from geobench.lifeline import watch_parent

            watch_parent(parent)  # exit with a SIGKILLed parent instead of rendering on

        cv2.setNumThreads(1)   # one process per core already
        pending, last = 0, time.monotonic()

        def tick(k: int) -> None:
            nonlocal pending, last
            pending += k
            if time.monotonic() - last > 0.25:
                results.put(("tick", wid, pending))
                pending, last = 0, time.monotonic()

        out = _run_range(job, tasks, render, tick, journal)
        results.put(("tick", wid, pending))
        results.put(("done", wid, out))
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent
        results.put(("error", wid, _portable(exc)))


def _parallel(job: Job, tasks: Sequence[tuple[int, Task]], render: Render, workers: int,
              progress, journal: Journal | None = None) -> list:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    n = len(tasks)
    cuts = [round(n * w / workers) for w in range(workers + 1)]
    procs = []
    for w in range(workers):
        part = tasks[cuts[w]:cuts[w + 1]]
        sub = Job(job.opts, job.diff, job.root, {s: job.sites[s] for s in {t[0] for _, t in part}})
        procs.append(ctx.Process(target=_worker, args=(results, w, sub, part, render, journal,
                                                             os.getpid()),
                                 daemon=True, name=f"geobench-synthetic-{w}"))
    out: list = [None] * workers
    done = 0
    try:
        for p in procs:
            p.start()
        while done < workers:
            try:
                kind, wid, data = results.get(timeout=0.5)
            except queue_mod.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"synthetic-world worker {dead[0].name} died (exit code "
                                       f"{dead[0].exitcode}; out of memory? try fewer "
                                       f"--workers)") from None
                continue
            if kind == "tick":
                progress.advance(data)
            elif kind == "done":
                out[wid] = data
                done += 1
            else:
                raise data
    finally:
        for p in procs:
            if p.is_alive() and done < workers:
                p.terminate()
        for p in procs:
            if p.pid is not None:  # a start that failed leaves nothing to join
                p.join()
        results.close()
    return [r for part in out for r in part]
