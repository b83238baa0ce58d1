"""Ctrl-C says what is true, and `prepare synthetic`, `crop` and `train` continue.

Before: every command said "completed outputs were kept ... re-run the same command to
continue"; after Ctrl-C in `prepare synthetic` nothing was kept and the re-run started
over; after Ctrl-C in `train` the same command was refused without --resume.
The interrupt is raised inside the real code path (KeyboardInterrupt is what Ctrl-C
raises in the main thread), after some outputs were finished.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from geobench.datasets.synthetic import layouts
from tests._train_world import register_test_model, write_world
from tests.test_crops import write_panos


def _interrupt_after(monkeypatch, module, name: str, n: int) -> list:
    """Make module.name raise KeyboardInterrupt on call n+1; returns the list of calls."""
    real, calls = getattr(module, name), []

    def wrapped(*args, **kwargs):
        if len(calls) == n:
            raise KeyboardInterrupt
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)
    return calls


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _synth(out: Path, **kw):
    from geobench.datasets.synthetic import SyntheticOptions
    from geobench.progress import set_quiet

    set_quiet(True)
    kw = {"pairs": 2, "test_pairs": 1, "cities": 1, "workers": 0, "aerial_size": 48,
          "ground_size": (16, 64), "difficulty": {"spacing_m": 20.0}, **kw}
    return SyntheticOptions(out=out, **kw)


def test_prepare_synthetic_resumes_from_finished_images(tmp_path, monkeypatch):
    from geobench.datasets.synthetic import generate
    from geobench.errors import Interrupted

    generate(_synth(tmp_path / "fresh"))
    calls = _interrupt_after(monkeypatch, layouts, "cvusa_pair", 2)
    partial = tmp_path / ".raw.partial"
    with pytest.raises(Interrupted, match=f"the images finished so far are kept in {partial}; "
                                          f"re-run the same command to continue from them"):
        generate(_synth(tmp_path / "raw"))
    assert not (tmp_path / "raw").exists() and partial.is_dir()
    monkeypatch.undo()
    counted = _interrupt_after(monkeypatch, layouts, "cvusa_pair", 10**6)
    generate(_synth(tmp_path / "raw"))
    assert len(calls) == 2 and len(counted) == 1  # only the unfinished pair is rendered
    same, fresh = _tree(tmp_path / "raw"), _tree(tmp_path / "fresh")
    same.pop("synthetic.json"), fresh.pop("synthetic.json")  # they record their own --out
    assert same == fresh and not partial.exists()  # the same bytes as an uninterrupted run


def test_prepare_synthetic_starts_over_when_the_options_changed(tmp_path, monkeypatch):
    from geobench.datasets.synthetic import generate
    from geobench.errors import Interrupted

    _interrupt_after(monkeypatch, layouts, "cvusa_pair", 1)
    with pytest.raises(Interrupted):
        generate(_synth(tmp_path / "raw"))
    monkeypatch.undo()
    counted = _interrupt_after(monkeypatch, layouts, "cvusa_pair", 10**6)
    generate(_synth(tmp_path / "raw", seed=4))  # a different world: nothing reusable
    assert len(counted) == 3


def test_prepare_synthetic_interrupt_through_the_cli(invoke, tmp_path, monkeypatch):
    from geobench.datasets import synthetic

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic.layouts, "write_cvusa", interrupted)
    res = invoke("prepare", "synthetic", "--out", tmp_path / "ds", "--quiet")
    assert res.exit_code == 130 and res.stderr.startswith("error: interrupted; the images "
                                                          "finished so far are kept in ")
    exists = invoke("prepare", "synthetic", "--out", tmp_path / "ds", "--quiet")
    (tmp_path / "ds" / "raw").mkdir(parents=True)
    (tmp_path / "ds" / "raw" / "x").write_text("x")
    exists = invoke("prepare", "synthetic", "--out", tmp_path / "ds", "--quiet")
    assert exists.exit_code == 2 and "pass --overwrite to replace it" in exists.stderr
    assert "overwrite=True" not in exists.stderr


def test_crop_resumes_and_says_what_was_kept(invoke, tmp_path, monkeypatch):
    import geobench.geometry.crops as crops
    import geobench.geometry.cropset as cropset

    write_panos(tmp_path / "src", n=5)
    args = ["crop", tmp_path / "src", tmp_path / "out", "--fov", "90", "--mode", "perspective",
            "--size", "16x16", "--per-image", "2", "--format", "png", "--quiet"]
    full = invoke(*args[:2], tmp_path / "full", *args[3:])
    assert full.exit_code == 0
    calls = _interrupt_after(monkeypatch, crops, "crop_image", 2)
    monkeypatch.setattr(cropset, "crop_image", crops.crop_image)
    res = invoke(*args)
    assert res.exit_code == 130 and len(calls) == 2
    assert "2 of 5 panoramas are cropped, recorded in" in res.stderr
    assert "re-run the same command to continue" in res.stderr
    assert len(pd.read_csv(tmp_path / "out" / "crops.csv")) == 4
    monkeypatch.undo()
    res = invoke(*args[:-1])
    assert res.exit_code == 0, res.output
    assert "│ 5         │ 10    │ 3       │ 2       │" in res.stdout  # written 3, skipped 2
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "crops.csv"),
                                  pd.read_csv(tmp_path / "full" / "crops.csv"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    register_test_model()
    return write_world(tmp_path_factory.mktemp("world"), n_train=6, n_test=3)


def test_train_names_the_command_that_continues(invoke, world, tmp_path, monkeypatch):
    import geobench.train.engine as engine

    name = register_test_model()
    run = tmp_path / "run"
    args = ["train", name, "--data", world, "--out", run, "--preset", "tiny", "--epochs", "3",
            "--workers", "0", "--eval-every", "0", "--quiet"]
    real = engine._Run._step
    plan = {"steps": 0, "stop_at": 0}  # stop before this step of the invocation

    def step(self, *batch):
        if plan["steps"] == plan["stop_at"]:
            raise KeyboardInterrupt
        plan["steps"] += 1
        return real(self, *batch)

    monkeypatch.setattr(engine._Run, "_step", step)
    res = invoke(*args)
    assert res.exit_code == 130
    assert "before the first checkpoint was saved" in res.stderr
    assert f"start again with: geobench train {name} --data {world} --out {run}\n" in res.stderr
    plan.update(steps=0, stop_at=2)  # one epoch is one step: stop in epoch 2
    res = invoke(*args)  # the same command starts again ...
    assert res.exit_code == 130, res.output
    command = f"geobench train {name} --data {world} --out {run} --resume"
    assert f"the last saved checkpoint {run / 'checkpoint.pt'} is kept" in res.stderr
    assert command in res.stderr
    monkeypatch.undo()
    res = invoke(*command.split()[1:], "--quiet")  # ... and the printed command continues
    assert res.exit_code == 0, res.output
    assert "resumed from step" in res.stdout


def test_other_commands_claim_nothing_false(invoke, tmp_path, monkeypatch):
    import geobench.eval.evaluate as evaluation

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation, "evaluate_features", interrupted)
    res = invoke("eval", "--features", tmp_path / "f.h5", "--out", tmp_path / "o")
    assert res.exit_code == 130
    assert res.stderr.strip() == ("error: interrupted before results.h5 and metrics.csv were "
                                  "written; re-run the same command")
