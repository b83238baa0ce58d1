"""`prepare synthetic` under faults: planted files, kills, Ctrl-C with workers, full disks.

Before (issue 25): a pickle planted in OUT/.raw.partial ran on the re-run; a run stopped
after the world was renamed into place but before the index was refused on re-run
("already exists ... --overwrite"); a full disk deleted the finished images while saying
they were kept; Ctrl-C while the workers started printed their tracebacks; a SIGKILLed
parent left a "leaked semaphore" warning behind.
"""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from geobench.datasets.synthetic import layouts
from tests.test_interrupts import _interrupt_after, _synth, _tree

ROOT = Path(__file__).resolve().parents[1]


class _Planted:
    """A pickle that creates a folder when it is loaded (stands for any code)."""

    def __init__(self, where: Path) -> None:
        self.where = where

    def __reduce__(self):
        return os.mkdir, (str(self.where),)


def test_a_planted_journal_never_runs(tmp_path, monkeypatch):
    from geobench.datasets.synthetic import generate
    from geobench.errors import Interrupted

    generate(_synth(tmp_path / "fresh"))
    _interrupt_after(monkeypatch, layouts, "cvusa_pair", 1)
    with pytest.raises(Interrupted):
        generate(_synth(tmp_path / "raw"))
    monkeypatch.undo()
    partial, ran = tmp_path / ".raw.partial", tmp_path / "code-ran"
    evil = pickle.dumps((0, _Planted(ran)))
    stem = ".journal-synthetic-cvusa-pairs-"
    (partial / f"{stem}99999.pkl").write_bytes(evil)      # the name the journal had
    (partial / f"{stem}99998.jsonl").write_bytes(evil)    # the name it has now
    (partial / f"{stem}99997.jsonl").write_text('[7, "x"]\n[-1, 1]\n[true, 1]\n{"a": 1}\n')
    counted = _interrupt_after(monkeypatch, layouts, "cvusa_pair", 10**6)
    generate(_synth(tmp_path / "raw"))
    assert not ran.exists()
    assert len(counted) == 2  # the one recorded pair is reused, nothing planted counts
    same, fresh = _tree(tmp_path / "raw"), _tree(tmp_path / "fresh")
    same.pop("synthetic.json"), fresh.pop("synthetic.json")
    assert same == fresh


def test_a_run_stopped_before_the_index_continues(invoke, tmp_path, monkeypatch):
    """Ctrl-C (or a kill: the same files on disk) after the world is in place."""
    import geobench.datasets as datasets

    args = ["prepare", "synthetic", "--out", tmp_path / "ds", "--pairs", "2", "--test-pairs",
            "1", "--cities", "1", "--difficulty", "easy", "--workers", "0", "--quiet"]

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets, "prepare_dataset", interrupted)
    res = invoke(*args)
    assert res.exit_code == 130, res.output
    raw = tmp_path / "ds" / "raw"
    assert res.stderr == (f"error: interrupted before the index was written; the generated "
                          f"world in {raw} is complete and kept; re-run the same command to "
                          f"index it (the world is not rendered again)\n")
    before = _tree(raw)
    monkeypatch.undo()
    counted = _interrupt_after(monkeypatch, layouts, "cvusa_pair", 0)  # any render fails
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert counted == [] and _tree(raw) == before
    assert (tmp_path / "ds" / "index.csv").is_file()


def test_a_world_complete_but_not_yet_renamed_is_not_rendered_again(tmp_path, monkeypatch):
    """Killed between writing synthetic.json and the final rename."""
    from geobench.datasets.synthetic import generate

    generate(_synth(tmp_path / "raw"))
    (tmp_path / "raw").rename(tmp_path / ".raw.partial")
    counted = _interrupt_after(monkeypatch, layouts, "cvusa_pair", 0)
    assert generate(_synth(tmp_path / "raw")) == tmp_path / "raw"
    assert counted == [] and (tmp_path / "raw" / "synthetic.json").is_file()
    assert not (tmp_path / ".raw.partial").exists()


def test_a_full_disk_keeps_the_finished_images_it_says_it_keeps(tmp_path, monkeypatch):
    import errno

    from geobench.datasets.synthetic import generate, scene
    from geobench.errors import DiskFullError
    from geobench.fileio import atomic_path

    generate(_synth(tmp_path / "fresh"))
    per_pair = sum(p.suffix in (".jpg", ".png") for p in (tmp_path / "fresh").rglob("*")) // 3
    real, saved = scene.save, []

    def save(path, img, quality):
        if len(saved) == 2 * per_pair:  # the third pair's first image: two are finished
            with atomic_path(path):
                raise OSError(errno.ENOSPC, "No space left on device")
        saved.append(path)
        real(path, img, quality)

    monkeypatch.setattr(scene, "save", save)
    with pytest.raises(DiskFullError, match="completed files were. Free some space .* and "
                                            "re-run the same command"):
        generate(_synth(tmp_path / "raw"))
    partial = tmp_path / ".raw.partial"
    assert all(p.is_file() for p in saved)  # what was finished is still there
    monkeypatch.undo()
    counted = _interrupt_after(monkeypatch, layouts, "cvusa_pair", 10**6)
    generate(_synth(tmp_path / "raw"))
    assert len(counted) == 1 and not partial.exists()  # the re-run continued
    same, fresh = _tree(tmp_path / "raw"), _tree(tmp_path / "fresh")
    same.pop("synthetic.json"), fresh.pop("synthetic.json")
    assert same == fresh


# --------------------------------------------------------------------------- workers

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


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _workers(pid: int) -> list[int]:
    return [c for c in _children(pid) if "multiprocessing.spawn" in _cmdline(c)
            or "--multiprocessing-fork" in _cmdline(c)]


PREPARE = ["-m", "geobench", "prepare", "synthetic", "--pairs", "400", "--test-pairs", "1",
           "--cities", "1", "--difficulty", "easy", "--workers", "2", "--quiet"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_while_the_workers_start_gives_one_line(tmp_path):
    """Ctrl-C in a terminal signals the whole process group, workers still importing
    included: only the parent may answer, with the one true line."""
    proc = subprocess.Popen([sys.executable, *PREPARE, "--out", str(tmp_path / "ds")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 120
        while len(_workers(proc.pid)) < 2 and time.monotonic() < deadline \
                and proc.poll() is None:
            time.sleep(0.01)
        assert len(_workers(proc.pid)) == 2, "the workers did not start"
        time.sleep(0.3)  # they are importing now
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = err.decode()
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert text.startswith("error: interrupted; the images finished so far are kept in "), text
    assert len(text.strip().splitlines()) == 1, text


# A parent that SIGKILLs itself halfway through sending a worker its work.
KILLED_MID_SEND = r"""
import os, signal, sys
from multiprocessing import connection
from geobench.datasets.synthetic import SyntheticOptions, generate
from geobench.progress import set_quiet
set_quiet(True)

real = connection.Connection._send_bytes

def send(self, buf):
    if len(buf) > 1000:
        data = bytes(buf)
        os.write(self.fileno(), len(data).to_bytes(4, "big") + data[:len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    real(self, buf)

connection.Connection._send_bytes = send
generate(SyntheticOptions(out=sys.argv[1], pairs=400, test_pairs=1, cities=1, workers=2,
                          preset="easy"))
"""

# A parent SIGKILLed while its workers render.
KILLED_WHILE_RENDERING = r"""
import os, signal, sys, threading, time
from geobench.datasets.synthetic import SyntheticOptions, generate
from geobench.progress import set_quiet
set_quiet(True)

def kill_when_rendering():
    while not any(n.endswith(".jpg") for _, _, f in os.walk(sys.argv[2]) for n in f):
        time.sleep(0.02)
    os.kill(os.getpid(), signal.SIGKILL)

threading.Thread(target=kill_when_rendering, daemon=True).start()
generate(SyntheticOptions(out=sys.argv[1], pairs=400, test_pairs=1, cities=1, workers=2,
                          preset="easy"))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl lifeline")
@pytest.mark.parametrize("script", [KILLED_MID_SEND, KILLED_WHILE_RENDERING],
                         ids=["mid-send", "rendering"])
def test_orphaned_workers_exit_without_a_word(tmp_path, script):
    raw = tmp_path / "raw"
    proc = subprocess.Popen([sys.executable, "-c", script, str(raw), str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    try:
        # stderr ends only when every process holding it (workers, resource tracker) is gone
        out, err = proc.communicate(timeout=120)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    text = err.decode()
    assert "Traceback" not in text and "pickle" not in text and "leaked" not in text, text
    assert "resource_tracker" not in text, text
