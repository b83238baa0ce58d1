"""Messages that tell the truth, options that mean one thing (issue 14).

Each test states the behaviour before the change in its docstring.
"""
from __future__ import annotations

import re

import cv2
import numpy as np
import pandas as pd
import pytest

from tests._train_world import register_test_model, write_world
from tests.test_crops import write_panos
from tests.test_eval_cli import feats  # noqa: F401  (fixture)


def test_version(invoke):
    """Before: `geobench --version` was 'No such option'."""
    from geobench import __version__

    res = invoke("--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"geobench {__version__}"


def test_every_command_help_has_a_runnable_looking_example(invoke):
    """Before: no command's help showed an example."""
    from geobench.cli import app

    names = [c.name for c in app.registered_commands]
    names += [f"{g.name} {c.name}" for g in app.registered_groups
              for c in g.typer_instance.registered_commands]
    assert len(names) >= 13
    for name in names:
        res = invoke(*name.split(), "--help")
        assert res.exit_code == 0, name
        examples = re.split(r"Examples?:", res.stdout, maxsplit=1)
        assert len(examples) == 2, f"`geobench {name} --help` has no example"
        assert f"geobench {name}" in examples[1]


def test_world_difficulty_is_difficulty_and_preset_is_a_deprecated_alias(invoke, tmp_path):
    """Before: --preset meant the world's difficulty in prepare/demo, model size in train."""
    res = invoke("prepare", "synthetic", "--out", tmp_path / "a", "--difficulty", "nightmare")
    assert res.exit_code == 2 and "unknown synthetic preset 'nightmare'" in res.stderr
    assert "deprecated" not in res.stderr
    res = invoke("prepare", "synthetic", "--out", tmp_path / "b", "--preset", "nightmare")
    assert res.exit_code == 2 and "--preset is deprecated here" in res.stderr
    assert "--difficulty nightmare" in res.stderr
    res = invoke("prepare", "synthetic", "--out", tmp_path / "c", "--preset", "easy",
                 "--difficulty", "hard")
    assert res.exit_code == 2 and "disagree" in res.stderr
    assert "--difficulty" in invoke("prepare", "--help").stdout
    assert "--preset" not in invoke("demo", "--help").stdout  # hidden: the alias only
    res = invoke("demo", "--out", tmp_path / "d", "--preset", "nightmare")
    assert res.exit_code == 2 and "deprecated" in res.stderr and not (tmp_path / "d").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--epochs", "0"], "--epochs 0: must be an integer >= 1"),
    (["--difficulty", "nightmare"], "unknown synthetic preset"),
    (["--pairs", "3"], "--pairs 3 is fewer than one training batch"),
    (["--test-pairs", "0"], "--test-pairs 0"),
])
def test_demo_validates_every_option_before_building_the_world(invoke, tmp_path, args, fragment):
    """Before: `demo --epochs 0` built the synthetic world (minutes) and only then failed."""
    res = invoke("demo", "--out", tmp_path / "demo", *args, "--quiet")
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and fragment in lines[-1] and len(lines) == 1, res.output
    assert not (tmp_path / "demo").exists()


def test_tolerance_is_percent_in_report_and_bench(invoke, feats, tmp_path):  # noqa: F811
    """Before: report --tolerance was points, bench --tolerance a fraction, neither said so."""
    out = tmp_path / "ev"
    assert invoke("eval", "--features", feats, "--out", out, "--quiet").exit_code == 0
    base = pd.read_csv(out / "metrics.csv")
    base["r@1"] = base["r@1"] + 0.5  # the baseline was half a point better
    base.to_csv(tmp_path / "base.csv", index=False)
    assert invoke("report", out, "--check", tmp_path / "base.csv").exit_code == 0
    assert invoke("report", out, "--check", tmp_path / "base.csv", "--tolerance",
                  "0.6%").exit_code == 0
    strict = invoke("report", out, "--check", tmp_path / "base.csv", "--tolerance", "0.4")
    assert strict.exit_code == 1 and "FAIL" in strict.stdout
    bad = invoke("report", out, "--check", tmp_path / "base.csv", "--tolerance", "abc")
    assert bad.exit_code == 2 and "--tolerance 'abc' is not a percentage" in bad.stderr
    assert "in percent points" in " ".join(invoke("report", "--help").stdout.split())
    assert "in percent of the baseline" in " ".join(invoke("bench", "--help").stdout.split())
    res = invoke("bench", "eval", "--tolerance", "-5", "--out", tmp_path / "bench")
    assert res.exit_code == 2 and "not a percentage" in res.stderr  # before measuring


def test_workers_zero_means_no_worker_processes_everywhere(invoke, tmp_path):
    """Before: --workers 0 meant one per core in prepare and was an error in polar/crop."""
    from geobench.datasets.synthetic import SyntheticOptions
    from geobench.datasets.synthetic.pool import resolve_workers

    src = tmp_path / "aerial"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), np.full((16, 16, 3), 90, np.uint8))
    res = invoke("polar", src, tmp_path / "polar", "--size", "8x32", "--workers", "0", "-q")
    assert res.exit_code == 0, res.output
    write_panos(tmp_path / "panos", n=1)
    res = invoke("crop", tmp_path / "panos", tmp_path / "crops", "--fov", "90", "--workers",
                 "0", "-q")
    assert res.exit_code == 0, res.output
    assert SyntheticOptions(out=tmp_path, workers=0).workers == 0
    assert resolve_workers(0, 10_000) == 1  # in this process
    assert resolve_workers(None, 10_000) >= 1  # left out: one per core
    for command in ("prepare", "polar", "crop", "train"):
        assert "0: none, work in this process" in " ".join(invoke(command, "--help").stdout.split())


def test_degenerate_settings_warn(invoke, feats, tiny_prepared, tmp_path):  # noqa: F811
    """Before: each of these ran silently (eval 38x slower, mine losing every positive,
    crops of ordinary photos, --train-radius ignored)."""
    res = invoke("eval", "--features", feats, "--out", tmp_path / "ev", "--memory", "1KB", "-q")
    assert res.exit_code == 0 and "warning: --memory 1KB is tiny" in res.stderr
    res = invoke("eval", "--features", feats, "--out", tmp_path / "ev2", "-q")
    assert "--memory" not in res.stderr
    res = invoke("mine", tiny_prepared.root, "--radius", "0", "--train-radius", "5", "-q")
    assert res.exit_code == 0, res.output
    assert "--radius 0 keeps only references at exactly" in res.stderr
    assert "--train-radius 5 is unused" in res.stderr and "--split test" in res.stderr
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "p.jpg"), np.full((48, 64, 3), 90, np.uint8))
    res = invoke("crop", photos, tmp_path / "c", "--fov", "90", "-q")
    assert res.exit_code == 0 and "p.jpg is 64x48 (width/height 1.33)" in res.stderr
    assert "not a 360-degree panorama" in res.stderr
    write_panos(tmp_path / "panos", n=1)
    res = invoke("crop", tmp_path / "panos", tmp_path / "c2", "--fov", "90", "-q")
    assert "warning" not in res.stderr
    res = invoke("prepare", "cvusa", "--root", tmp_path / "none", "--out", tmp_path / "ds",
                 "--pairs", "5")
    assert "--pairs only applies to `prepare synthetic`" in res.stderr


def test_train_on_cpu_without_preset_says_what_runs_and_when_it_ends(invoke, tmp_path):
    """Before: `train MODEL` without --preset on a CPU started the paper-sized run silently;
    off a terminal nothing was printed until the end."""
    name = register_test_model()
    ds = write_world(tmp_path / "w", n_train=8, n_test=3)
    res = invoke("train", name, "--data", ds, "--out", tmp_path / "run", "--device", "cpu",
                 "--epochs", "2", "--batch-size", "2", "--workers", "0", "--eval-every", "1")
    assert res.exit_code == 0, res.output
    err = res.stderr
    assert f"training {name} at paper size (no --preset) on the CPU: 2 epochs of batch 2" in err
    assert f"geobench train {name} --preset tiny --data {ds}" in err
    eta = re.search(r"note: [0-9.]+ s per step; about .+ left for the remaining [0-9,]+ of "
                    r"([0-9]+) steps", err)
    assert eta, err
    total = int(eta.group(1))
    epochs = [ln for ln in err.splitlines() if ln.startswith(f"train {name}: epoch")]
    assert len(epochs) == 2 and f"step {total // 2}/{total}" in epochs[0], epochs
    assert "img/s" in epochs[0]
    assert "r@1" in epochs[1]
    quiet = invoke("train", name, "--data", ds, "--out", tmp_path / "run2", "--preset", "tiny",
                   "--epochs", "1", "--workers", "0", "--quiet")
    assert quiet.exit_code == 0 and "paper size" not in quiet.stderr
    assert ": epoch" not in quiet.stderr


def test_dataloader_worker_errors_are_unwrapped():
    """Before: 'error: Caught DataError in DataLoader worker process 0. Original Traceback
    (most recent call last): ...' was printed."""
    from geobench.errors import DataError, user_message

    wrapped = DataError("Caught DataError in DataLoader worker process 0.\nOriginal Traceback "
                        "(most recent call last):\n  File \"x.py\", line 1, in f\n    raise "
                        "DataError(msg)\ngeobench.imagefile.DataError: a.jpg: damaged image "
                        "(JPEG is truncated); re-download it\n")
    assert user_message(wrapped) == "a.jpg: damaged image (JPEG is truncated); re-download it"
    assert user_message(DataError("plain")) == "plain"


@pytest.mark.parametrize("header", [
    b"[1, 2]", b'"text"', b'{"w": "x"}', b'{"w": {"dtype": "F32", "shape": [-1], '
    b'"data_offsets": [0, 4]}}', b'{"w": {"dtype": "F32", "shape": [1.5], "data_offsets": '
    b'[0, 4]}}', b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": "0"}}', b'{"w": '])
def test_malformed_safetensors_headers_are_one_line_errors(tmp_path, header):
    """Before: headers that are valid JSON of the wrong shape raised AttributeError or
    TypeError tracebacks."""
    from geobench.errors import DataError
    from geobench.models.weights import read_state_dict

    path = tmp_path / "w.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(4))
    with pytest.raises(DataError, match=r"w\.safetensors: .*re-(export|save)"):
        read_state_dict(path)
    path.write_bytes((10**15).to_bytes(8, "little") + b"{}")  # a length beyond the file
    with pytest.raises(DataError, match=r"w\.safetensors: not a safetensors file"):
        read_state_dict(path)
