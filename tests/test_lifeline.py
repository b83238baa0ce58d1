"""Worker processes of polar/crop exit when their parent is SIGKILLed.

Before: after `kill -9` of `polar ... --workers 2` the workers ran on for minutes and held
the command's output pipe, so a caller reading it until EOF hung.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The real pool of geobench.geometry.imagerun, with a job that takes far longer than the test.
SCRIPT = """
import sys, time
import geobench.lifeline
from geobench.geometry.imagerun import ImageJob, run_jobs

if sys.argv[2] == "poll":  # the portable fallback alone, as where prctl is missing
    geobench.lifeline._prctl_deathsig = lambda: False

def slow(img, params, job):
    time.sleep(120)
    return []

import cv2, numpy as np
cv2.imwrite(sys.argv[1], np.zeros((8, 8, 3), np.uint8))
jobs = [ImageJob(sys.argv[1], (), str(i)) for i in range(4)]
print("started", flush=True)
run_jobs(jobs, slow, None, workers=2)
"""


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", ["prctl", "poll"])
def test_workers_exit_when_the_parent_is_killed(tmp_path, how):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "a.png"), how],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        assert proc.stdout.readline().strip() == b"started"
        deadline = time.monotonic() + 30
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            workers = _children(proc.pid)
        assert len(workers) >= 2, "the pool did not start its workers"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "workers outlived their parent"
        # nobody holds the pipe any more: reading it ends instead of hanging
        assert proc.stdout.read() == b""
    finally:
        for pid in [proc.pid, *workers]:  # never leave a sleeper behind, even on failure
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.stdout.close()
