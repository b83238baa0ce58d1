"""Wrong input as a new user types it (issue 25 §7): every numeric option has a range and
every model argument a schema, checked before any work; inputs that were silently wrong,
tracebacks or unclear now fail in one line naming the option and the fix, leaving nothing."""
from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests._train_world import register_test_model, write_world
from tests.adapter_layouts import cvusa


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained run on a tiny world: (DS, RUN)."""
    from typer.testing import CliRunner

    from geobench.cli import app

    name = register_test_model()
    root = tmp_path_factory.mktemp("trained")
    ds = write_world(root)
    run = root / "run"
    res = CliRunner().invoke(app, ["train", name, "--data", str(ds), "--out", str(run),
                                   "--epochs", "1", "--workers", "0", "--eval-every", "0", "-q"])
    assert res.exit_code == 0, res.output
    return ds, run


def one_error(res, *needles: str) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and res.exception is None or isinstance(
        res.exception, SystemExit), res.exception
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def numeric_options():
    """(command path, parameter name) of every int/float option of the app."""
    import typer

    from geobench.cli import app

    found = []

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, path + [name])
            return
        for p in cmd.params:
            if p.type_descriptor.annotation in (int, float):
                found.append((path[-1], p.name))

    walk(typer.main.get_command(app), [])
    return found


def test_every_numeric_option_has_a_range():
    from geobench.validation import range_of

    options = numeric_options()
    assert len(options) > 30  # the walk found the app's options
    missing = [f"{c} --{p}" for c, p in options if range_of(c, p) is None]
    assert not missing, f"numeric options without a range in geobench.validation: {missing}"


@pytest.mark.parametrize("args, needle", [
    (["--nprobe", "0", "--search", "faiss:IVF2,Flat"], "--nprobe '0': use a positive integer"),
    (["--ef-search", "-1", "--search", "faiss:HNSW8"], "--ef-search '-1': use a positive"),
    (["--nprobe", "3", "--search", "faiss:Flat"], "--nprobe does not apply to faiss:Flat"),
    (["--max-loss", "-1", "--search", "faiss:HNSW8", "--ef-search", "auto"], "--max-loss -1"),
    (["--exact-sample", "-1", "--search", "faiss:Flat"], "--exact-sample -1"),
    (["--save-topk", "-1"], "--save-topk -1"),
    (["--memory", "0.5"], "--memory '0.5' is 0 bytes"),
    (["--search", "faiss:IVF64,Flat"], "64 lists need at least 64 references"),
    (["--search", "faiss:NoSuchIndex"], "faiss cannot build it"),
    (["--batch-size", "0"], "--batch-size 0"),
])
def test_eval_options_fail_before_anything_is_embedded(invoke, trained, tmp_path, args, needle):
    ds, run = trained
    out = tmp_path / "out"
    one_error(invoke("eval", run, "--data", ds, "--out", out, "-q", *args), needle)
    assert not out.exists()  # no features.h5: nothing was embedded


@pytest.mark.parametrize("args, needle", [
    (["prepare", "synthetic", "--out", "{tmp}/w", "--seed", "-1"], "--seed -1"),
    (["prepare", "synthetic", "--out", "{tmp}/w", "--root", "{tmp}"], "does not apply to"),
    (["prepare", "synthetic", "--out", "{tmp}/w", "--pairs", "0"], "--pairs 0"),
    (["demo", "--out", "{tmp}/w", "--seed", "-1"], "--seed -1"),
    (["train", "safa", "--preset", "tiny", "--data", "{ds}", "--out", "{tmp}/w", "--seed", "-1"],
     "--seed -1"),
    (["train", "safa", "--preset", "tiny", "--data", "{ds}", "--out", "{tmp}/w",
      "--set", "model_args.dropout=-5"], "argument dropout = -5"),
    (["train", "safa", "--preset", "tiny", "--data", "{ds}", "--out", "{tmp}/w",
      "--set", "model_args.dropout=1.5"], "must be a number in [0, 1)"),
    (["train", "safa", "--preset", "tiny", "--data", "{ds}", "--out", "{tmp}/w",
      "--set", "model_args.heads=two"], "heads = 'two'"),
    (["polar", "{tmp}/src", "{tmp}/w", "--size", "100000x100000"], "each side must be in"),
    (["polar", "{tmp}/src", "{tmp}/w", "--workers", "-1"], "--workers -1"),
    (["crop", "{tmp}/src", "{tmp}/w", "--fov", "90", "--workers", "-2"], "--workers -2"),
    (["crop", "{tmp}/src", "{tmp}/w", "--fov", "nan"], "--fov nan"),
    (["bench", "models", "--quick", "--out", "{tmp}/src/a.png"], "is a file"),
    (["viz", "examples", "{run}/eval", "--out", "{tmp}/w/x.png", "--queries", "-3"],
     "--queries -3"),
    (["viz", "attention", "{run}", "--data", "{ds}", "--out", "{ds}/figs"],
     "lies inside the input --data"),
    (["eval", "{run}", "--data", "{ds}", "--out", "{run}"], "is the run folder"),
    (["eval", "{ds}", "--data", "{ds}"], "is a prepared dataset, not a run directory"),
])
def test_wrong_values_are_one_line_and_leave_nothing(invoke, trained, tmp_path, args, needle):
    ds, run = trained
    (tmp_path / "src").mkdir()
    cv2.imwrite(str(tmp_path / "src" / "a.png"), np.full((16, 16, 3), 90, np.uint8))
    before = sorted(p.name for p in run.iterdir())
    res = invoke(*[a.format(tmp=tmp_path, ds=ds, run=run) for a in args], "-q")
    one_error(res, needle)
    assert not (tmp_path / "w").exists()  # no polar.json, crops.json, world or run
    assert sorted(p.name for p in run.iterdir()) == before
    assert not (ds / "figs").exists()


def test_mine_negative_radius_below_the_positive_radius_is_refused(invoke, tiny_prepared):
    positives = (tiny_prepared.root / "positives.csv").read_bytes()
    one_error(invoke("mine", tiny_prepared.root, "--negative-radius", "5", "--radius", "25"),
              "--negative-radius 5 is below --radius 25")
    one_error(invoke("mine", tiny_prepared.root, "--split", "train", "--negative-radius", "5"),
              "below --train-radius 10")
    assert (tiny_prepared.root / "positives.csv").read_bytes() == positives


def test_every_model_argument_has_a_schema_and_it_is_enforced():
    import inspect

    from geobench.errors import UsageError
    from geobench.models import MODELS, build_model, list_models

    for name in list_models():
        entry = MODELS.entry(name)
        if not entry.factory.__module__.startswith("geobench."):
            continue  # test models registered by other tests
        args = set(inspect.signature(entry.factory).parameters) - {"input_size"}
        assert args == set(entry.card.schema), f"{name}: schema differs from its arguments"
    with pytest.raises(UsageError, match="argument dropout = 1.5 .* in \\[0, 1\\)"):
        build_model("safa", preset="tiny", dropout=1.5)
    with pytest.raises(UsageError, match="heads = 0"):
        build_model("safa", preset="tiny", heads=0)
    with pytest.raises(UsageError, match="must be true or false"):
        build_model("safa", preset="tiny", pool5="no")


def test_examples_refuse_another_dataset_than_the_results(invoke, trained, tmp_path):
    ds, run = trained
    res = invoke("eval", run, "--data", ds, "-q")
    assert res.exit_code == 0, res.output
    other = write_world(tmp_path / "other", n_train=5)  # same uids, another world
    one_error(invoke("viz", "examples", run / "eval" / "tinyworld-test", "--data", other,
                     "--out", tmp_path / "x.png"), "not the prepared dataset")
    assert not (tmp_path / "x.png").exists()
    res = invoke("viz", "examples", run / "eval" / "tinyworld-test", "--data", ds,
                 "--out", tmp_path / "y.png", "-q")
    assert res.exit_code == 0 and (tmp_path / "y.png").is_file(), res.output


def test_doctor_and_prepare_of_another_datasets_tree(invoke, tmp_path):
    root = cvusa(tmp_path / "cvusa")
    res = invoke("doctor", "vigor", "--root", root)
    assert res.exit_code == 2 and "usable" not in res.stdout.splitlines()[-1]
    assert "nothing of vigor found" in res.stderr
    one_error(invoke("prepare", "vigor", "--root", root, "--out", tmp_path / "v"),
              "nothing of vigor found", "--root")
    assert not (tmp_path / "v").exists()


def test_a_pickled_weights_file_gets_no_unsafe_advice(invoke, trained, tmp_path):
    ds, run = trained
    bad = tmp_path / "random.pth"
    bad.write_bytes(pickle.dumps({"x": {1, 2}}, protocol=4))
    for args in (["eval", "--model", "safa", "--preset", "tiny", "--weights", bad, "--data", ds,
                  "--out", tmp_path / "o"],
                 ["eval", run, "--data", ds, "--checkpoint", bad, "--out", tmp_path / "o"]):
        line = one_error(invoke(*args, "-q"), str(bad), "never unpickles")
        assert "weights_only" not in line


def test_train_on_a_missing_dataset_names_the_dataset(invoke, tmp_path, monkeypatch):
    import geobench.models.initial as initial

    def no_download(*a, **k):
        raise AssertionError("a weights download started before the dataset was checked")

    monkeypatch.setattr(initial, "plan_start", no_download)
    one_error(invoke("train", "safa", "--data", tmp_path / "missing", "--out", tmp_path / "r"),
              "missing: not a directory")


def test_report_follows_symlinked_runs_and_checks_tolerance_first(invoke, trained, tmp_path):
    ds, run = trained
    assert invoke("eval", run, "--data", ds, "-q").exit_code == 0
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "mine").symlink_to(run, target_is_directory=True)
    res = invoke("report", folder, "--format", "csv")
    assert res.exit_code == 0, res.output
    assert [line.split(",")[0] for line in res.stdout.splitlines()[1:]] == ["mine"]
    html = tmp_path / "r.html"
    one_error(invoke("report", folder, "--html", html, "--check", "paper:SAFA",
                     "--tolerance", "abc"), "--tolerance 'abc'")
    one_error(invoke("report", folder, "--html", html, "--check", tmp_path / "none.csv"),
              "none.csv")
    assert not html.exists()


def test_range_messages_name_option_range_and_meaning():
    from geobench.errors import UsageError
    from geobench.validation import check_options

    with pytest.raises(UsageError, match=r"^--seed -1: must be an integer in \[0, 4294967295\]"):
        check_options("train", {"seed": -1})
    with pytest.raises(UsageError, match=r"--val-fraction 1: must be a number in \[0, 1\)"):
        check_options("train", {"val_fraction": 1.0})
    check_options("train", {"seed": 0, "val_fraction": 0.0, "quiet": True, "out": Path(".")})
