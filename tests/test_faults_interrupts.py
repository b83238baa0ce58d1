"""Ctrl-C with worker processes, locks naming live processes, damaged checksum files and
library output that bypassed the one-line error (issue 25).

Before: Ctrl-C during `crop --workers 2` broke the pool (BrokenProcessPool, rc 1) or said
"0 of 250 cropped" with crops on disk; a lock naming a live pid (pid 1) was taken over
"as no longer running"; a non-UTF-8 `.sha256` beside a checkpoint was a UnicodeDecodeError
traceback on `train --resume`; libpng's "Write Error" and torch's two-line DataLoader
warning reached the terminal raw.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest

from geobench.errors import DataError, UsageError
from geobench.guard import LOCK_NAME, claim_output
from tests.test_crops import write_panos

ROOT = Path(__file__).resolve().parents[1]

# `geobench crop` with each crop slowed down, so Ctrl-C lands mid-run (fork: the workers
# run this module's function).
SLOW_CROP = r"""
import sys, time
from geobench.geometry import cropset, crops

def slow(img, params, job):
    time.sleep(0.05)
    return crops.crop_image(img, params, job)

cropset.crop_image = slow
from geobench.cli import app
app(sys.argv[1:])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups, fork")
def test_ctrl_c_during_crop_with_workers_counts_what_is_on_disk(tmp_path):
    write_panos(tmp_path / "src", n=60)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CROP, "crop", str(tmp_path / "src"),
                             str(out), "--fov", "90", "--mode", "perspective", "--size",
                             "16x16", "--per-image", "2", "--format", "png", "--workers", "2",
                             "--quiet"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and \
                len(list(out.glob("*.png"))) < 6:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = err.decode()
    assert proc.returncode == 130, text
    assert len(text.strip().splitlines()) == 1 and "Traceback" not in text, text
    n = int(text.split("error: interrupted; ")[1].split(" of 60 panoramas")[0])
    on_disk = len(list(out.glob("*.png")))
    assert 3 <= n < 60 and on_disk == 2 * n, (n, on_disk)
    assert len(pd.read_csv(out / "crops.csv")) == on_disk


def _lock(folder: Path, **holder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps({"command": "geobench train x",
                                                "started": time.time(), **holder}))


def test_a_lock_naming_a_live_process_is_not_called_dead(tmp_path, capsys):
    import socket

    out = tmp_path / "run"
    _lock(out, pid=1)  # alive, and nothing says on which machine it wrote the lock
    with pytest.raises(UsageError, match=r"names geobench train x \(pid 1.*pid 1 is running "
                                         r"on this machine.*delete .*\.geobench\.lock"):
        with claim_output(out, "train"):
            pass
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == 1  # left as it was
    _lock(out, pid=1, host="elsewhere")
    with pytest.raises(UsageError, match=r"on elsewhere, and pid 1 is running"):
        with claim_output(out, "train"):
            pass
    _lock(out, pid=1, host=socket.gethostname())  # this machine: the pid was reused
    with claim_output(out, "train"):
        pass
    err = capsys.readouterr().err
    assert "which no longer holds it (pid 1 is now another program)" in err, err
    assert "no longer running" not in err


def test_damaged_checksum_file_is_one_line(tmp_path, monkeypatch):
    import torch

    from geobench.train.checkpoint import checksum_path, read_checkpoint, save_checkpoint

    path = save_checkpoint(tmp_path / "checkpoint.pt", {"step": 1, "w": torch.zeros(2)})
    checksum_path(path).write_bytes(b"\xff\xfe\x00 not text \x80\n")
    with pytest.raises(DataError, match=r"checkpoint\.pt\.sha256: damaged \(not a sha256sum "
                                         r"checksum line\), so checkpoint\.pt cannot be "
                                         r"verified"):
        read_checkpoint(path)
    save_checkpoint(path, {"step": 2, "w": torch.ones(2)})  # a new save replaces it
    assert read_checkpoint(path)[0]["step"] == 2


def test_train_resume_with_a_damaged_checksum_file(invoke, tmp_path):
    from tests._train_world import register_test_model, write_world

    name = register_test_model()
    world = write_world(tmp_path / "world", n_train=6, n_test=3)
    def args(epochs: int) -> list:
        return ["train", name, "--data", world, "--out", tmp_path / "run", "--preset", "tiny",
                "--epochs", str(epochs), "--workers", "0", "--eval-every", "0", "--quiet"]

    assert invoke(*args(1)).exit_code == 0
    (tmp_path / "run" / "checkpoint.pt.sha256").write_bytes(b"\x89PNG\r\n\x1a\n\xff")
    res = invoke(*args(2), "--resume")
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1
    assert "checkpoint.pt.sha256: damaged" in res.stderr


def test_third_party_warnings_are_one_line(invoke, tmp_path, capfd):
    """torch's DataLoader warns in two lines (message, then its source line)."""
    from tests._train_world import register_test_model, write_world

    name = register_test_model()
    world = write_world(tmp_path / "world", n_train=6, n_test=3)
    with warnings.catch_warnings():  # as outside pytest, which records warnings itself
        warnings.resetwarnings()
        warnings.showwarning = lambda message, category, filename, lineno, file=None, \
            line=None: sys.stderr.write(warnings.formatwarning(message, category, filename,
                                                               lineno, line))
        res = invoke("train", name, "--data", world, "--out", tmp_path / "run", "--preset",
                     "tiny", "--epochs", "1", "--workers", str(4 * (os.cpu_count() or 1)),
                     "--eval-every", "0", "--quiet")
    assert res.exit_code == 0, res.output
    lines = (res.stderr + capfd.readouterr().err).strip().splitlines()
    worker_lines = [ln for ln in lines if "worker" in ln]
    assert worker_lines and all(ln.startswith("warning: ") for ln in worker_lines), lines
    assert not [ln for ln in lines if "check_worker_number_rationality" in ln], lines
    assert len(worker_lines) == 1, worker_lines  # once, not once per loader
