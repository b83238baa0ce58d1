"""Checkpoint checksums (refused when damaged, on load, eval and resume) and best.pt recovery."""
from __future__ import annotations

import os
import subprocess

import pytest
import torch

from geobench.errors import DataError
from geobench.train import checkpoint as ckpt
from tests._train_world import register_test_model, write_world

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    register_test_model()
    return write_world(tmp_path_factory.mktemp("world"), n_train=8, n_test=4)


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    from typer.testing import CliRunner

    from geobench.cli import app

    run = tmp_path_factory.mktemp("runs") / "run"
    res = CliRunner().invoke(app, ["train", register_test_model(), "--data", str(world), "--out",
                                   str(run), "--epochs", "1", "--workers", "0", "--eval-every",
                                   "1", "--quiet"])
    assert res.exit_code == 0, res.output
    return run


def flip(path, n=100):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_checksum_beside_each_checkpoint_is_sha256sum_compatible(trained):
    for name in (ckpt.LAST, ckpt.BEST):
        side = trained / f"{name}.sha256"
        assert side.read_text().split() == [ckpt.verify_checkpoint(trained / name), name]
    check = subprocess.run(["sha256sum", "-c", f"{ckpt.LAST}.sha256"], cwd=trained,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_damaged_checkpoint_is_refused_by_eval_and_resume(invoke, trained, world, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    flip(run / ckpt.LAST)
    with pytest.raises(DataError, match="checkpoint.pt: fails its checksum"):
        ckpt.load_checkpoint(run / ckpt.LAST)
    for args in (["eval", run, "--data", world, "--checkpoint", "last"], ["train", register_test_model(), "--data", world,
                                                   "--out", run, "--resume", "--epochs", "2"]):
        res = invoke(*args, "--quiet")
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
        assert res.exit_code == 2 and len(errors) == 1, res.output
        err = errors[0]
        assert "fails its checksum" in err, res.output
        assert str(run / ckpt.LAST) in err and "Traceback" not in res.output
    assert not (run / "eval").exists()


def test_a_kill_while_replacing_leaves_a_checkpoint_that_verifies(tmp_path, monkeypatch):
    path = tmp_path / ckpt.LAST
    ckpt.save_checkpoint(path, {"step": 1, "w": torch.zeros(3)})
    old = path.read_bytes()
    real = os.replace

    def killed(src, dst):
        if str(dst) == str(path):
            raise KeyboardInterrupt  # after the checksum file listed both, before the rename
        real(src, dst)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(path, {"step": 2, "w": torch.ones(3)})
    monkeypatch.undo()
    assert path.read_bytes() == old and len(ckpt.checksum_path(path).read_text().splitlines()) == 2
    assert ckpt.load_checkpoint(path)["step"] == 1
    ckpt.save_checkpoint(path, {"step": 3, "w": torch.ones(3)})
    assert len(ckpt.checksum_path(path).read_text().splitlines()) == 1
    assert ckpt.load_checkpoint(path)["step"] == 3
    # A checkpoint from before checksums existed still loads, and gains one when replaced.
    ckpt.checksum_path(path).unlink()
    assert ckpt.load_checkpoint(path)["step"] == 3


def test_lost_best_checkpoint_is_reported_and_re_established(invoke, trained, world, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / ckpt.BEST).unlink()
    res = invoke("train", register_test_model(), "--data", world, "--out", run, "--resume",
                 "--epochs", "2", "--quiet")
    assert res.exit_code == 0, res.output
    assert "best.pt is missing" in res.stderr and "the next evaluation" in res.stderr
    assert ckpt.load_checkpoint(run / ckpt.BEST)["epoch"] == 2  # written again
    # A damaged best.pt is treated the same way.
    flip(run / ckpt.BEST)
    res = invoke("train", register_test_model(), "--data", world, "--out", run, "--resume",
                 "--epochs", "3", "--quiet")
    assert res.exit_code == 0 and "best.pt fails its checksum" in res.stderr, res.output
    assert ckpt.load_checkpoint(run / ckpt.BEST)["epoch"] == 3
