"""A full disk at several free sizes, on a real small tmpfs (issue 25).

Before: `eval` of a run with ~16-30 KB free printed h5py tracebacks and crashed (rc 139),
leaving `features.h5.rank0-of-1` and its lock; `prepare synthetic` said "completed files
were kept" and deleted them.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_safety_disk import _unshare_ok

ROOT = Path(__file__).resolve().parents[1]

# Steps in one interpreter: ["run", key, argv] runs `geobench argv` and reports rc, stderr
# and what is left under the key's mount; ["remount", key, size] grows a mount.
DRIVER = r"""
import contextlib, io, json, os, subprocess, sys
sys.path.insert(0, sys.argv[1])
from tests._train_world import register_test_model
register_test_model()
from geobench.cli import app
mnt = sys.argv[3]
for step in json.loads(sys.argv[2]):
    if step[0] == "remount":
        subprocess.run(["mount", "-o", f"remount,size={step[2]}", f"{mnt}/{step[1]}"], check=True)
        continue
    _, key, args = step
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            app(args)
            rc = 0
        except SystemExit as exc:
            rc = exc.code
    import cv2, hashlib
    files, broken = {}, []
    for d, ds, fs in os.walk(f"{mnt}/{key}"):
        for f in fs:
            path = os.path.join(d, f)
            files[os.path.relpath(path, f"{mnt}/{key}")] = hashlib.sha256(
                open(path, "rb").read()).hexdigest()
            if f.endswith(".jpg") and cv2.imread(path) is None:
                broken.append(path)
    print(json.dumps({"key": key, "rc": rc, "err": err.getvalue(), "files": files,
                      "broken": broken}), flush=True)
"""


def _run(tmp_path: Path, sizes: dict[str, str], steps: list) -> list[dict]:
    m = tmp_path / "m"
    mounts = []
    for key, size in sizes.items():
        (m / key).mkdir(parents=True)
        mounts.append(f"mount -t tmpfs -o size={size} tmpfs {m / key} || exit 99")
    script = "\n".join(mounts + ['exec "$@"'])
    res = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", sys.executable, "-c",
                          DRIVER, str(ROOT), json.dumps(steps), str(m)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    if res.returncode == 99:
        pytest.skip("cannot mount a tmpfs here")
    # a crash (rc 139) or a traceback anywhere fails here, before any result is looked at
    assert res.returncode == 0, res.stderr[-3000:]
    # geobench's lines are captured per command; anything here bypassed them (a traceback,
    # a C library writing to the raw stderr)
    assert res.stderr.strip() == "", res.stderr[-3000:]
    return [json.loads(line) for line in res.stdout.strip().splitlines()]


def _one_line_disk_full(r: dict) -> None:
    lines = [ln for ln in r["err"].strip().splitlines() if not ln.startswith("note: ")]
    assert r["rc"] == 2 and len(lines) == 1, r
    assert lines[0].startswith("error: ") and "free" in lines[0] and "bytes" in lines[0], r


@pytest.mark.slow
@pytest.mark.skipif(not _unshare_ok(), reason="needs user namespaces (unshare -rm)")
def test_eval_of_a_run_with_a_few_kilobytes_free(tmp_path):
    from tests._train_world import register_test_model, write_world

    world = write_world(tmp_path / "world", n_train=8, n_test=4)
    name = register_test_model()
    run = tmp_path / "run"
    sizes = {"k8": "8k", "k16": "16k", "k32": "32k"}
    steps = [["run", "train", ["train", name, "--data", str(world), "--out", str(run),
                               "--epochs", "1", "--workers", "0", "--preset", "tiny", "-q"]]]
    steps += [["run", key, ["eval", str(run), "--data", str(world), "--out",
                            str(tmp_path / "m" / key / "e"), "-q"]] for key in sizes]
    results = _run(tmp_path, sizes, steps)
    assert results[0]["rc"] == 0, results[0]
    assert [r["key"] for r in results[1:]] == list(sizes)
    for r in results[1:]:
        _one_line_disk_full(r)
        assert r["files"] == {}, r  # no temporary, no rank shard, no lock


@pytest.mark.slow
@pytest.mark.skipif(not _unshare_ok(), reason="needs user namespaces (unshare -rm)")
def test_prepare_synthetic_keeps_what_it_says_and_continues(tmp_path, invoke):
    args = ["prepare", "synthetic", "--pairs", "4", "--test-pairs", "1", "--cities", "1",
            "--difficulty", "easy", "--workers", "0", "-q"]
    fresh = invoke(*args, "--out", tmp_path / "fresh")
    assert fresh.exit_code == 0, fresh.output
    sizes = {"k64": "64k", "k160": "160k"}
    steps = [["run", key, args + ["--out", str(tmp_path / "m" / key / "ds")]] for key in sizes]
    steps += [["remount", "k160", "4m"], steps[-1]]
    results = _run(tmp_path, sizes, steps)
    for r in results[:2]:
        _one_line_disk_full(r)
        assert "completed files were" in r["err"], r
        assert r["broken"] == [], r  # every image still there is whole
        assert not [f for f in r["files"] if ".tmp" in f or "geobench.lock" in f], r
    assert len([f for f in results[1]["files"] if f.endswith(".jpg")]) >= 4
    last = results[2]
    assert last["rc"] == 0, last
    for f in (tmp_path / "fresh" / "raw").rglob("*"):  # the same world as an undisturbed run
        if f.is_file() and f.name != "synthetic.json":
            rel = f"ds/raw/{f.relative_to(tmp_path / 'fresh' / 'raw').as_posix()}"
            assert last["files"][rel] == hashlib.sha256(f.read_bytes()).hexdigest(), rel


@pytest.mark.slow
@pytest.mark.skipif(not _unshare_ok(), reason="needs user namespaces (unshare -rm)")
def test_prepare_polar_on_a_full_disk_is_one_line_without_libpng(tmp_path):
    """The polar images were written by libpng itself, which printed "libpng error: Write
    Error" beside geobench's line."""
    import cv2
    import numpy as np

    from tests import adapter_layouts

    raw = adapter_layouts.cvusa(tmp_path / "raw", n_train=3, n_test=2)
    rng = np.random.default_rng(0)
    for aerial in raw.rglob("bingmap/**/*.jpg"):
        cv2.imwrite(str(aerial), (rng.random((200, 200, 3)) * 255).astype(np.uint8))
    sizes = {"k24": "24k", "k64": "64k"}
    steps = [["run", key, ["prepare", "cvusa", "--root", str(raw), "--out",
                           str(tmp_path / "m" / key / "ds"), "--polar", "--polar-size",
                           "128x512", "-q"]] for key in sizes]
    for r in _run(tmp_path, sizes, steps):
        _one_line_disk_full(r)
        assert "libpng" not in r["err"], r
        assert r["files"] == {}, r  # no temporary, no empty folders, no lock
