"""A full disk: one line naming the file and the bytes, temporaries removed, completed files
kept. Injected ENOSPC in-process; a real small tmpfs (user namespace) end to end."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from geobench.errors import DiskFullError
from geobench.fileio import atomic_path, write_bytes

ROOT = Path(__file__).resolve().parents[1]


def test_injected_enospc_becomes_one_error_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "index.csv"
    target.write_text("complete, from an earlier run")
    with pytest.raises(DiskFullError) as info:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"x" * 5000)
            raise OSError(errno.ENOSPC, "No space left on device")
    message = str(info.value)
    assert str(target) in message and "more than 5,000 bytes" in message and "free" in message
    assert target.read_text() == "complete, from an earlier run"
    assert [p.name for p in tmp_path.iterdir()] == ["index.csv"]  # the temporary is gone


def test_library_errors_on_a_full_disk_count_as_disk_full(tmp_path, monkeypatch):
    """torch.save reports ENOSPC as a RuntimeError without an errno."""
    import geobench.fileio as fio

    monkeypatch.setattr(fio, "free_bytes", lambda folder: 0)
    monkeypatch.setattr(fio.shutil, "disk_usage",
                        lambda folder: shutil._ntuple_diskusage(100, 100, 0))
    with pytest.raises(DiskFullError, match="checkpoint.pt: disk full"):
        with atomic_path(tmp_path / "checkpoint.pt"):
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    with pytest.raises(ValueError):  # an unrelated error stays what it is
        with atomic_path(tmp_path / "x.bin"):
            raise ValueError("not a disk problem")
    write_bytes(tmp_path / "ok.bin", b"1")  # nothing left behind either way
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.bin"]


def _unshare_ok() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "true"], capture_output=True).returncode == 0


# One interpreter runs every command in-process (a python start costs seconds on a busy
# machine); each writes into its own small tmpfs.
DRIVER = r"""
import contextlib, io, json, os, sys
sys.path.insert(0, sys.argv[1])
from tests._train_world import register_test_model
register_test_model()
from geobench.cli import app
for key, args in json.loads(sys.argv[2]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            app(args)
            rc = 0
        except SystemExit as exc:
            rc = exc.code
    mnt = sys.argv[3] + "/" + key
    left = [os.path.join(d, f) for d, ds, fs in os.walk(mnt) for f in fs + ds
            if ".tmp" in f or f.startswith((".geobench-staging", ".geobench.lock"))]
    whole = None
    if key == "polar":
        import cv2
        pngs = [os.path.join(mnt, "polar", f) for f in os.listdir(mnt + "/polar")
                if f.endswith(".png")]
        whole = [len(pngs), sum(cv2.imread(f) is not None for f in pngs)]
    print(json.dumps({"key": key, "rc": rc, "err": err.getvalue(), "left": left,
                      "whole": whole}))
"""
SIZES = {"polar": "256k", "eval": "256k", "download": "256k", "train": "48k"}


@pytest.mark.slow
@pytest.mark.skipif(not _unshare_ok(), reason="needs user namespaces (unshare -rm)")
def test_every_writer_on_a_small_tmpfs(tmp_path):
    import json

    from geobench.eval.csr import CSR
    from geobench.eval.features import write_features
    from tests._train_world import register_test_model, write_world

    src = tmp_path / "aerials"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(src / f"a{i}.png"), rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
    q = rng.standard_normal((3000, 64)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    feats = write_features(tmp_path / "f.h5", q, q, CSR.from_lists([[i] for i in range(3000)]))
    archive = tmp_path / "cvusa.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("CVUSA/big.bin", b"\0" * (2 << 20))
    world = write_world(tmp_path / "world", n_train=8, n_test=4)
    name = register_test_model()
    m = tmp_path / "m"
    cmds = {
        "polar": ["polar", str(src), f"{m}/polar/polar", "--size", "112x616", "-q"],
        "eval": ["eval", "--features", str(feats), "--out", f"{m}/eval/e", "-q"],
        "download": ["download", "cvusa", "--from", str(archive), "--root", f"{m}/download/d",
                     "-q"],
        "train": ["train", name, "--data", str(world), "--out", f"{m}/train/run", "--epochs",
                  "1", "--workers", "0", "-q"],
    }
    mounts = []
    for key in cmds:
        (m / key).mkdir(parents=True)
        mounts.append(f"mount -t tmpfs -o size={SIZES[key]} tmpfs {m / key} || exit 99")
    script = "\n".join(mounts + ['exec "$@"'])
    res = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", sys.executable, "-c",
                          DRIVER, str(ROOT), json.dumps(cmds), str(m)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    if res.returncode == 99:
        pytest.skip("cannot mount a tmpfs here")
    assert res.returncode == 0, res.stderr[-3000:]
    results = {r["key"]: r for r in map(json.loads, res.stdout.strip().splitlines())}
    assert set(results) == set(cmds), res.stdout
    for key, r in results.items():
        # advice printed before the work starts (train's paper-size notice, the warning that a
        # tiny validation carve picks best.pt on noise) is not the error
        lines = [ln for ln in r["err"].strip().splitlines()
                 if not ln.startswith(("note: ", "warning: "))]
        assert r["rc"] == 2 and len(lines) == 1, (key, r)
        assert lines[0].startswith("error: ") and "bytes" in lines[0], (key, r)
        assert "disk full" in lines[0] or "free" in lines[0], (key, r)
        assert r["left"] == [], (key, r)
    found, whole = results["polar"]["whole"]
    assert found == whole and found >= 1  # the images completed before the disk filled are kept
