"""`geobench train` and `geobench eval RUN` through the CLI, success and error paths."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import torch

from tests._train_world import register_test_model, write_world

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    register_test_model()
    return write_world(tmp_path_factory.mktemp("world"))


def test_train_then_eval_run(invoke, world, tmp_path):
    name = register_test_model()
    run = tmp_path / "run"
    res = invoke("train", name, "--data", world, "--out", run, "--epochs", "2", "--workers", "0",
                 "--eval-every", "1", "--quiet")
    assert res.exit_code == 0, res.output
    assert "final loss" in res.stdout and "best r@1" in res.stdout
    assert {p.name for p in run.iterdir()} == {"checkpoint.pt", "best.pt", "config.json", "log.csv",
                                               "checkpoint.pt.sha256", "best.pt.sha256"}
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[0]["r@1"] != ""

    res = invoke("eval", run, "--data", world, "--split", "test", "--quiet")
    assert res.exit_code == 0, res.output
    out = run / "eval" / "tinyworld-test"
    assert (out / "results.h5").is_file() and (out / "metrics.csv").is_file()
    with h5py.File(out / "features.h5") as h5:
        assert h5["/query/descriptors"].shape == (6, 16) and h5.attrs["model"] == name
        assert h5.attrs["split"] == "test"
    metrics = list(csv.DictReader((out / "metrics.csv").open()))[0]
    assert metrics["n_query"] == "6" and float(metrics["r@10"]) == 100.0
    stamp = (out / "features.h5").stat().st_mtime_ns
    assert invoke("eval", run, "--data", world, "--quiet").exit_code == 0
    assert (out / "features.h5").stat().st_mtime_ns == stamp  # cached descriptors reused


@pytest.mark.parametrize("args, fragment", [
    (["train", "no_such_model", "--out", "{tmp}/r"], "unknown model 'no_such_model'"),
    (["train", "{model}", "--data", "{tmp}/nowhere", "--out", "{tmp}/r"], "not a directory"),
    (["train", "{model}", "--out", "{tmp}/r", "--resume"], "nothing to resume"),
    (["train", "{model}", "--out", "{tmp}/r", "--batch-size", "1"], "--batch-size 1: must be an integer >= 2"),
    (["train", "{model}", "--out", "{tmp}/r", "--preset", "huge"], "no preset 'huge'"),
    (["train", "{model}", "--out", "{tmp}/r", "--config", "{tmp}/missing.yaml"], "missing.yaml"),
    (["eval", "{tmp}/r"], "--data DS is required"),
    (["eval", "{tmp}/r", "--data", "{world}"], "not a run directory"),
    (["eval", "{tmp}", "--data", "{world}"], "not a run directory (no checkpoint.pt"),
])
def test_errors_are_one_line_and_write_nothing(invoke, world, tmp_path, args, fragment):
    name = register_test_model()
    if "--data" not in args and args[0] == "train":
        args = args[:2] + ["--data", "{world}"] + args[2:]
    args = [a.format(tmp=tmp_path, model=name, world=world) for a in args]
    res = invoke(*args, "--quiet")
    assert res.exit_code != 0
    err = res.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and fragment in err, err
    assert not (tmp_path / "r" / "checkpoint.pt").exists()
    assert "Traceback" not in res.output


def test_killed_run_leaves_whole_files_and_resumes(invoke, world, tmp_path):
    name = register_test_model()
    run = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("checkpoint_every: 1\neval_every: 0\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from tests._train_world import register_test_model as r; r(); "
            "from geobench.cli import app; app(sys.argv[2:])")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code, str(ROOT), "train", name, "--data",
                             str(world), "--out", str(run), "--epochs", "200", "--workers", "0",
                             "--config", str(cfg), "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "log.csv").is_file():
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Every file under its final name is complete and loads.
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["step"] >= 3
    json.loads((run / "config.json").read_text())
    assert list(csv.DictReader((run / "log.csv").open()))[0]["epoch"] == "1"
    target = state["step"] + 2
    res = invoke("train", name, "--data", world, "--out", run, "--resume", "--max-steps",
                 str(target), "--quiet")
    assert res.exit_code == 0, res.output
    assert "resumed from step" in res.stdout
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == target


def test_eval_run_checkpoint_device_and_cheap_checks_first(invoke, world, tmp_path, monkeypatch):
    import hashlib
    import shutil

    from geobench.eval.results import read_results

    name = register_test_model()
    run = tmp_path / "run"
    assert invoke("train", name, "--data", world, "--out", run, "--epochs", "1", "--workers",
                  "0", "--eval-every", "1", "--quiet").exit_code == 0
    assert (run / "best.pt").is_file()
    # every cheap mistake fails in one line before anything is embedded
    import geobench.train.runeval as R

    def no_embedding(*a, **k):
        raise AssertionError("embedded before validating")

    monkeypatch.setattr(R, "embed_sets", no_embedding)
    for args, fragment in (
            (["--protocol", "cvusaa"], "cvusaa"), (["--split", "val"], "split 'val'"),
            (["--checkpoint", str(tmp_path / "nope.pt")], "nope.pt: checkpoint not found"),
            (["--device", "tpu"], "--device 'tpu'"), (["--batch-size", "0"], "--batch-size"),
            (["--ties", "fair"], "--ties 'fair'")):
        res = invoke("eval", run, "--data", world, "--quiet", *args)
        assert res.exit_code != 0 and fragment in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.output and len(res.stderr.strip().splitlines()) == 1
    if not torch.cuda.is_available():
        res = invoke("eval", run, "--data", world, "--device", "cuda", "--quiet")
        assert res.exit_code != 0 and "no CUDA device" in res.stderr
    monkeypatch.undo()
    # default: the last checkpoint, since this run's validation carve (a few queries) is too
    # small to choose best.pt on (config.json says so); the recorded hash is of the bytes
    # loaded; --checkpoint best / PATH
    assert json.loads((run / "config.json").read_text())["validation"]["eval_default"] == "last"
    out = run / "eval" / "tinyworld-test"
    res = invoke("eval", run, "--data", world, "--device", "cpu", "--workers", "0",
                 "--batch-size", "4", "--quiet")
    assert res.exit_code == 0, res.output
    stored = read_results(out / "results.h5")
    extra = json.loads(stored.attrs["extra"])
    assert extra["checkpoint"] == str((run / "checkpoint.pt").resolve()) and extra["device"] == "cpu"
    assert stored.attrs["checkpoint_sha256"] == hashlib.sha256(
        (run / "checkpoint.pt").read_bytes()).hexdigest()
    res = invoke("eval", run, "--data", world, "--checkpoint", "best", "--out", tmp_path / "l",
                 "--workers", "0", "--quiet")
    assert res.exit_code == 0, res.output
    assert json.loads(read_results(tmp_path / "l" / "results.h5").attrs["extra"])[
        "checkpoint"] == str((run / "best.pt").resolve())
    # a checkpoint replaced after an evaluation is never scored with the stale features
    stamp = (out / "features.h5").stat().st_mtime_ns
    other = tmp_path / "other"
    assert invoke("train", name, "--data", world, "--out", other, "--epochs", "1", "--seed",
                  "9", "--workers", "0", "--eval-every", "0", "--quiet").exit_code == 0
    shutil.copy(other / "checkpoint.pt", run / "checkpoint.pt")
    shutil.copy(other / "checkpoint.pt.sha256", run / "checkpoint.pt.sha256")  # its checksum too
    assert invoke("eval", run, "--data", world, "--workers", "0", "--quiet").exit_code == 0
    assert (out / "features.h5").stat().st_mtime_ns != stamp
    assert read_results(out / "results.h5").attrs["checkpoint_sha256"] == hashlib.sha256(
        (other / "checkpoint.pt").read_bytes()).hexdigest()
