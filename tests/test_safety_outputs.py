"""Output folders: never overlapping an input, checked before work, locked, cleaned after a kill."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from geobench.errors import UsageError
from geobench.fileio import atomic_path, remove_stale_temps
from geobench.guard import LOCK_NAME, check_output, claim_output, folder_lock

ROOT = Path(__file__).resolve().parents[1]


def images(folder: Path, n: int = 2, shape=(32, 32, 3)) -> dict[Path, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"im{i}.png"), rng.integers(0, 255, shape, dtype=np.uint8))
    return {p: p.read_bytes() for p in sorted(folder.iterdir())}


def one_line_error(res, fragment: str) -> str:
    assert res.exit_code != 0, res.output
    err = res.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and fragment in err, err
    assert "Traceback" not in res.output
    return err


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------- containment


@pytest.mark.parametrize("out_of, how", [
    (lambda src: src, "is the same folder as"),
    (lambda src: src / "sub", "lies inside"),
    (lambda src: src.parent, "contains"),
])
def test_output_overlapping_an_input_is_refused(tmp_path, out_of, how):
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(UsageError, match=how):
        check_output(out_of(src), {"SRC": src})
    # A link to the input is the input.
    (tmp_path / "alias").symlink_to(src)
    with pytest.raises(UsageError, match="is the same folder as"):
        check_output(tmp_path / "alias", {"SRC": src})
    check_output(tmp_path / "elsewhere", {"SRC": src})  # a sibling is fine


@pytest.mark.parametrize("args", [
    ["crop", "{src}", "{src}", "--fov", "90"],
    ["crop", "{src}", "{src}/crops", "--fov", "90"],
    ["polar", "{src}", "{src}", "--format", "jpg"],
    ["polar", "{src}", "{tmp}"],
    ["prepare", "cvusa", "--root", "{src}", "--out", "{src}/prepared"],
])
def test_cli_never_writes_into_its_input(invoke, tmp_path, args):
    src = tmp_path / "src"
    before = images(src)
    res = invoke(*[a.format(src=src, tmp=tmp_path) for a in args], "--quiet")
    one_line_error(res, "writing there would overwrite or mix into your input")
    assert {p: p.read_bytes() for p in sorted(src.iterdir())} == before


def test_train_out_equal_to_data_is_refused(invoke, tiny_prepared):
    ds = tiny_prepared.root
    before = sorted(p.name for p in ds.iterdir())
    res = invoke("train", "safa", "--data", ds, "--out", ds, "--quiet")
    one_line_error(res, "--out")
    assert sorted(p.name for p in ds.iterdir()) == before


def test_list_file_outputs_never_land_on_an_input(invoke, tmp_path):
    src = tmp_path / "imgs"
    before = images(src)
    listing = tmp_path / "list.txt"
    listing.write_text("imgs/im0.png\nimgs/im1.png\n")
    # DST = the list's folder and the same extension: each output would be its own input.
    res = invoke("polar", listing, tmp_path, "--quiet")
    one_line_error(res, "is also an input image")
    assert {p: p.read_bytes() for p in sorted(src.iterdir())} == before


# --------------------------------------------------------------------------- output checks


@pytest.mark.parametrize("args", [
    ["prepare", "synthetic", "--out", "{f}"],
    ["prepare", "cvusa", "--root", "{tmp}/raw", "--out", "{f}"],
    ["polar", "{tmp}/raw", "{f}"],
    ["crop", "{tmp}/raw", "{f}", "--fov", "90"],
    ["train", "safa", "--data", "{tmp}/raw", "--out", "{f}"],
    ["eval", "--features", "{tmp}/raw/x.h5", "--out", "{f}"],
    ["demo", "--out", "{f}"],
])
def test_output_that_is_a_file_fails_before_any_work(invoke, tmp_path, args):
    images(tmp_path / "raw")
    target = tmp_path / "taken"
    target.write_text("keep me")
    res = invoke(*[a.format(tmp=tmp_path, f=target) for a in args], "--quiet")
    one_line_error(res, "is a file, not a folder")
    assert target.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
@pytest.mark.parametrize("args", [
    ["prepare", "synthetic", "--out", "{ro}/ds"],
    ["polar", "{tmp}/raw", "{ro}/p"],
    ["crop", "{tmp}/raw", "{ro}", "--fov", "90"],
    ["train", "safa", "--data", "{tmp}/raw", "--out", "{ro}/run"],
    ["eval", "--features", "{tmp}/raw/x.h5", "--out", "{ro}/e"],
    ["demo", "--out", "{ro}/demo"],
])
def test_unwritable_output_fails_before_any_work(invoke, tmp_path, args):
    images(tmp_path / "raw")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        res = invoke(*[a.format(tmp=tmp_path, ro=ro) for a in args], "--quiet")
        one_line_error(res, "writable")
    finally:
        ro.chmod(0o755)


def _unshare_ok() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _unshare_ok(), reason="needs user namespaces (unshare -rm)")
def test_read_only_file_system_fails_before_any_work(tmp_path):
    """A read-only mount is unwritable even for root: one line, exit 2, for every writer."""
    images(tmp_path / "raw")
    ro = tmp_path / "ro"
    ro.mkdir()
    cmds = [f"geobench polar {tmp_path}/raw {ro}/p -q",
            f"geobench demo --out {ro}/demo -q"]
    script = f"mount -t tmpfs -o ro,size=64k tmpfs {ro} || exit 99\n" + "".join(
        f"{sys.executable} -m geobench {c.removeprefix('geobench ')} 2>&1; echo rc=$?\n"
        for c in cmds)
    res = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    if res.returncode == 99:
        pytest.skip("cannot mount a tmpfs here")
    blocks = res.stdout.strip().split("\n")
    assert blocks.count("rc=2") == len(cmds), res.stdout + res.stderr
    errors = [b for b in blocks if b.startswith("error: ")]
    assert len(errors) == len(cmds) and all("not writable" in e for e in errors), res.stdout


# --------------------------------------------------------------------------- locks


HOLD = ("import sys, time; sys.path.insert(0, sys.argv[1]); "
        "from geobench.guard import folder_lock; "
        "lock = folder_lock(sys.argv[2], 'geobench prepare synthetic'); lock.__enter__(); "
        "print('ready', flush=True); time.sleep(60)")


def test_second_run_fails_at_once_naming_the_holder_then_takes_over_after_a_kill(invoke,
                                                                                 tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(ROOT), str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        t0 = time.perf_counter()
        res = invoke("prepare", "synthetic", "--out", out, "--pairs", "4", "--quiet")
        assert time.perf_counter() - t0 < 10  # fails at once, never waits for the holder
        err = one_line_error(res, "in use by geobench prepare synthetic")
        assert f"pid {holder.pid}" in err
        assert not (out / "raw").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == holder.pid  # left behind
    with folder_lock(out, "geobench test") as _:
        assert json.loads((out / LOCK_NAME).read_text())["command"] == "geobench test"
    assert not (out / LOCK_NAME).exists()


def test_stale_lock_is_taken_over_with_a_message(invoke, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    pid = dead_pid()
    (out / LOCK_NAME).write_text(json.dumps({"pid": pid, "command": "geobench train x",
                                             "started": time.time()}))
    with claim_output(out, "train"):
        pass
    err = capsys.readouterr().err
    assert "took over the lock left by geobench train x" in err and f"pid {pid}" in err
    assert not (out / LOCK_NAME).exists()


def test_claim_removes_only_folders_it_created_and_left_empty(tmp_path):
    with pytest.raises(RuntimeError):
        with claim_output(tmp_path / "a" / "b", "x"):
            raise RuntimeError("failed before writing")
    assert not (tmp_path / "a").exists()
    with claim_output(tmp_path / "c", "x") as out:
        (out / "kept.txt").write_text("1")
    assert (tmp_path / "c" / "kept.txt").is_file() and not (tmp_path / "c" / LOCK_NAME).exists()


# --------------------------------------------------------------------------- temporaries


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); "
            "from geobench.fileio import atomic_path; "
            "ctx = atomic_path(sys.argv[2] + '/sub/img.png'); tmp = ctx.__enter__(); "
            "open(tmp, 'wb').write(b'x' * 1000); print(tmp, flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(ROOT), str(out)],
                            stdout=subprocess.PIPE, text=True)
    tmp = Path(proc.stdout.readline().strip())
    assert tmp.is_file() and f".p{proc.pid}." in tmp.name
    assert remove_stale_temps(out) == 0  # its writer is alive: not touched
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with atomic_path(out / "other.txt") as mine:  # a live writer's own temporary survives
        mine.write_text("x")
        with claim_output(out, "polar"):
            assert mine.exists()
    assert not tmp.exists() and (out / "other.txt").read_text() == "x"


# --------------------------------------------------------------------------- demo


def test_demo_never_replaces_a_folder_it_did_not_make(invoke, tmp_path):
    out = tmp_path / "mine"
    (out / "data").mkdir(parents=True)
    (out / "data" / "thesis.tex").write_text("precious")
    (out / "run").mkdir()
    res = invoke("demo", "--out", out, "--pairs", "8", "--test-pairs", "4", "--quiet")
    one_line_error(res, "already holds files that geobench demo did not write")
    assert (out / "data" / "thesis.tex").read_text() == "precious" and (out / "run").is_dir()
