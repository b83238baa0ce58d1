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

import json
import os
import pickle
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geobench.datasets.synthetic.difficulty import Difficulty
from geobench.datasets.synthetic.options import SyntheticOptions
from geobench.datasets.synthetic.sites import Site
from geobench.fileio import disk_full_or
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
    appended as one JSON line to a per-process file in the partial output folder. A record
    is therefore proof that the task's files are complete; a record cut short by a kill is
    ignored. JSON, never pickle: the folder is the user's, and reading it must not run code
    someone planted there. Every result passes through the same encoding, journalled or
    not, so a resumed run sees exactly the values a fresh one does.
    """

    root: Path
    label: str

    @property
    def stem(self) -> str:
        return JOURNAL_PREFIX + "".join(c if c.isalnum() else "-" for c in self.label)

    def add(self, index: int, result: Any) -> Any:
        """Record task `index` as finished; returns `result` as a re-run would read it."""
        line = json.dumps([index, result], default=_plain, separators=(",", ":")) + "\n"
        path = self.root / f"{self.stem}-{os.getpid()}.jsonl"
        try:
            with open(path, "a", encoding="utf-8") as out:
                out.write(line)
        except OSError as exc:  # a line cut short is ignored when read back
            raise disk_full_or(exc, path, len(line)) from None
        return json.loads(line)[1]

    def load(self, n_tasks: int) -> dict[int, Any]:
        done: dict[int, Any] = {}
        for path in sorted(self.root.glob(f"{self.stem}-*.jsonl")):
            with open(path, "rb") as handle:
                for raw in handle:
                    try:
                        index, result = json.loads(raw)
                    except (ValueError, TypeError):  # a record cut short, or not ours
                        continue
                    if type(index) is int and 0 <= index < n_tasks:
                        done[index] = result
        return done


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as the Python values JSON holds."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"a synthetic-world task returned a {type(value).__name__}, which the "
                    f"resume journal cannot record")


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
               tick: Callable[[int], Any], journal: Journal):
    from geobench.datasets.synthetic.scene import build_town

    town, built, out = None, -1, []
    for index, (s, payload) in tasks:
        if s != built:
            town = None   # free the previous district before building the next
            town, built = build_town(job.sites[s], job.opts, job.diff), s
        out.append(journal.add(index, render(town, payload, job)))
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
    done = journal.load(n)
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


def _worker(wid: int, orders, results, parent: int) -> None:
    """Receive (job, tasks, render, journal) from the parent, render, send the results.

    The work travels over a pipe after the start, not as arguments of the process: a
    parent killed while sending it leaves this worker an EOF it can exit on quietly,
    instead of a "pickle data was truncated" traceback from Python's start-up code.
    """
    from geobench.lifeline import watch_parent

    watch_parent(parent)  # exit with a SIGKILLed parent instead of rendering on
    try:
        job, tasks, render, journal = orders.recv()
    except (EOFError, OSError, pickle.UnpicklingError):
        os._exit(1)  # the parent is gone: nobody wants the results
    orders.close()
    try:
        import cv2

        cv2.setNumThreads(1)   # one process per core already
        pending, last = 0, time.monotonic()

        def tick(k: int) -> None:
            nonlocal pending, last
            pending += k
            if time.monotonic() - last > 0.25:
                results.send(("tick", pending))
                pending, last = 0, time.monotonic()

        out = _run_range(job, tasks, render, tick, journal)
        results.send(("tick", pending))
        results.send(("done", out))
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent
        try:
            results.send(("error", _portable(exc)))
        except OSError:  # the parent is gone
            os._exit(1)


def _parallel(job: Job, tasks: Sequence[tuple[int, Task]], render: Render, workers: int,
              progress, journal: Journal) -> list:
    """Render in `workers` spawned processes, one pipe each way per worker (pipes, not a
    multiprocessing.Queue: no named semaphores, so a killed parent leaves no "leaked
    semaphore" warning behind)."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    from geobench.lifeline import workers_ignore_ctrl_c

    ctx = mp.get_context("spawn")
    n = len(tasks)
    cuts = [round(n * w / workers) for w in range(workers + 1)]
    procs, readers, orders, out = [], {}, [], [None] * workers
    try:
        with workers_ignore_ctrl_c("spawn"):
            for w in range(workers):
                orders_in, orders_out = ctx.Pipe(duplex=False)
                results_in, results_out = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_worker, args=(w, orders_in, results_out, os.getpid()),
                                   daemon=True, name=f"geobench-synthetic-{w}")
                procs.append(proc)
                proc.start()
                orders_in.close()
                results_out.close()  # so a dead worker reads as EOF here
                readers[results_in] = w
                orders.append(orders_out)
        for w, conn in enumerate(orders):  # Ctrl-C may stop this: workers then see EOF
            part = tasks[cuts[w]:cuts[w + 1]]
            sub = Job(job.opts, job.diff, job.root,
                      {s: job.sites[s] for s in {t[0] for _, t in part}})
            conn.send((sub, part, render, journal))
            conn.close()
        while readers:
            for conn in wait(list(readers), timeout=0.5):
                w = readers[conn]
                try:
                    kind, data = conn.recv()
                except EOFError:
                    procs[w].join(5)
                    raise RuntimeError(f"synthetic-world worker {procs[w].name} died (exit code "
                                       f"{procs[w].exitcode}; out of memory? try fewer "
                                       f"--workers)") from None
                if kind == "tick":
                    progress.advance(data)
                elif kind == "done":
                    out[w] = data
                    del readers[conn]
                    conn.close()
                else:
                    raise data
    finally:
        for proc in procs:
            if proc.is_alive() and readers:
                proc.terminate()
        for proc in procs:
            if proc.pid is not None:  # a start that failed leaves nothing to join
                proc.join()
        for conn in [*orders, *readers]:
            conn.close()
    return [r for part in out for r in part]
