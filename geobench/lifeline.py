"""Worker processes that exit when their parent dies.

A SIGKILLed parent cannot tell its workers to stop: they would go on for minutes and
keep the parent's stdout/stderr pipes open, so whoever waits for the command's output
hangs. Each worker calls `watch_parent(pid)` first:

* on Linux, prctl(PR_SET_PDEATHSIG, SIGKILL) makes the kernel kill the worker the moment
  its parent exits (ctypes, no dependency);
* everywhere, a daemon thread also checks every half second that the parent is still its
  parent (a worker whose parent died is re-parented), the fallback where prctl is missing.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
POLL_SECONDS = 0.5


def _prctl_deathsig() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _orphaned(parent: int) -> bool:
    return os.getppid() != parent


def _watch(parent: int) -> None:
    while True:
        time.sleep(POLL_SECONDS)
        if _orphaned(parent):
            os._exit(1)  # no cleanup: the parent that wanted the results is gone


@contextlib.contextmanager
def workers_ignore_ctrl_c(start_method: str = "fork"):
    """Start worker processes inside this block: they never receive SIGINT. A Ctrl-C that
    arrives meanwhile is held and raised in this process when the block ends."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no process groups to signal
        yield
        return
    if start_method != "fork":
        # The first spawn starts multiprocessing's resource tracker, which unblocks SIGINT
        # in this thread when it is up: have it up before blocking.
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def watch_parent(parent: int) -> None:
    """Make this (worker) process exit when process `parent` dies."""
    _prctl_deathsig()
    if _orphaned(parent):  # the parent died before we could ask to be told
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="geobench-lifeline",
                     daemon=True).start()
