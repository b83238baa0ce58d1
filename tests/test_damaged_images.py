"""Damaged JPEGs (cut short, bytes flipped) are found, named and never trained on silently.

Before: a JPEG truncated to a third was decoded half grey and trained on with rc 0,
libjpeg's "Premature end of JPEG file" appeared on stderr without a file name (even with
--quiet), `prepare --strict` and `doctor --deep` let such files through.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from geobench.errors import DataError
from geobench.imagefile import DamagedImage, captured_stderr, check_image, decode_image
from tests import adapter_layouts as layouts
from tests._damaged import damage, flipped, jpeg_bytes, truncated
from tests._train_world import register_test_model, write_world


@pytest.fixture
def jpegs(tmp_path):
    good = jpeg_bytes()
    files = {"good": good, "truncated": truncated(good), "flipped": flipped(good)}
    for name, data in files.items():
        (tmp_path / f"{name}.jpg").write_bytes(data)
    return tmp_path


def test_opencv_alone_accepts_the_damaged_files(jpegs, capfd):
    # The cases are real: plain OpenCV returns pictures for both, libjpeg only complains.
    assert cv2.imread(str(jpegs / "truncated.jpg")) is not None
    assert cv2.imdecode(np.fromfile(jpegs / "flipped.jpg", np.uint8), cv2.IMREAD_COLOR) is not None
    err = capfd.readouterr().err
    assert "Premature end of JPEG file" in err and "Corrupt JPEG data" in err


def test_decode_names_the_damage_and_silences_libjpeg(jpegs, capfd):
    assert decode_image(jpegs / "good.jpg").shape == (32, 128, 3)
    with pytest.raises(DamagedImage, match=r"truncated\.jpg: damaged image \(JPEG is truncated"):
        decode_image(jpegs / "truncated.jpg")
    with pytest.raises(DamagedImage, match=r"flipped\.jpg: damaged image \(Corrupt JPEG data"):
        check_image(jpegs / "flipped.jpg")
    # cut short but with an end marker appended: libjpeg's own warning is the evidence
    (jpegs / "cut.jpg").write_bytes(truncated(jpeg_bytes()) + b"\xff\xd9")
    with pytest.raises(DamagedImage, match="premature end of data segment"):
        decode_image(jpegs / "cut.jpg")
    with pytest.raises(DataError, match=r"missing\.jpg: cannot read \(file not found\)"):
        decode_image(jpegs / "missing.jpg")
    assert "JPEG" not in capfd.readouterr().err  # nothing raw reached the terminal


def test_capture_passes_progress_output_through(capfd):
    with captured_stderr() as messages:
        os.write(2, b"\x1b[2Kbar 50%\n")
        os.write(2, b"decoder says no\n")
    assert messages == ["decoder says no"]
    err = capfd.readouterr().err
    assert "bar 50%" in err and "decoder says no" not in err


def test_prepare_strict_and_doctor_deep_decode_every_image(invoke, tmp_path):
    raw = layouts.cvusa(tmp_path / "CVUSA")
    damage(raw / "streetview/panos/0000002.jpg", "flipped")
    # the header check alone passes a file with flipped bytes ...
    assert invoke("doctor", "cvusa", "--root", raw, "--quiet").exit_code == 0
    deep = invoke("doctor", "cvusa", "--root", raw, "--deep", "--quiet")
    assert deep.exit_code == 2
    assert "0000002.jpg (Corrupt JPEG data" in deep.stderr and "Traceback" not in deep.output
    res = invoke("prepare", "cvusa", "--root", raw, "--out", tmp_path / "ds", "--strict",
                 "--quiet")
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "0000002.jpg: damaged image (Corrupt JPEG data" in lines[0] and "--strict" in lines[0]
    assert not (tmp_path / "ds" / "index.csv").exists()
    damage(raw / "streetview/panos/0000002.jpg", "truncated")
    res = invoke("prepare", "cvusa", "--root", raw, "--out", tmp_path / "ds", "--strict")
    assert res.exit_code == 2 and "0000002.jpg: damaged image (JPEG is truncated" in res.stderr


@pytest.fixture
def damaged_world(tmp_path):
    register_test_model()
    ds = write_world(tmp_path / "w", n_train=6, n_test=3)
    # a JPEG cut short in place of one training panorama (content decides the decoder)
    damage(tmp_path / "w" / "raw" / "ground" / "train1.png", "truncated")
    return ds


TRAIN = ["--preset", "tiny", "--epochs", "1", "--max-steps", "2", "--eval-every", "0"]


@pytest.mark.parametrize("workers", ["0", "1"])
def test_train_fails_with_one_line_naming_the_file(invoke, damaged_world, tmp_path, capfd,
                                                   workers):
    name = register_test_model()
    res = invoke("train", name, "--data", damaged_world, "--out", tmp_path / "run", *TRAIN,
                 "--workers", workers, "--quiet")
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.output
    # with a DataLoader worker the message is the worker's, not torch's wrapper
    assert lines[0].startswith("error: ") and "train1.png: damaged image" in lines[0]
    assert "Caught" not in lines[0] and "Traceback" not in res.output
    assert "Premature end" not in capfd.readouterr().err


def test_train_skip_counts_and_lists_the_file(invoke, damaged_world, tmp_path, capfd):
    name = register_test_model()
    run = tmp_path / "run"
    res = invoke("train", name, "--data", damaged_world, "--out", run, *TRAIN,
                 "--workers", "0", "--on-bad-image", "skip", "--quiet")
    assert res.exit_code == 0, res.output
    assert "skipped 1 unreadable image(s)" in res.stderr and "bad_images.txt" in res.stderr
    listed = (run / "bad_images.txt").read_text().splitlines()
    assert len(listed) == 1 and listed[0].split("\t")[0].endswith("train1.png")
    assert "Premature end" not in capfd.readouterr().err
    bad = invoke("train", name, "--data", damaged_world, "--out", tmp_path / "r2", *TRAIN,
                 "--on-bad-image", "ignore")
    assert bad.exit_code == 2 and "on_bad_image" in bad.stderr and "fail | skip" in bad.stderr


def test_eval_fail_or_skip_a_damaged_test_image(invoke, tmp_path):
    name = register_test_model()
    ds = write_world(tmp_path / "w", n_train=6, n_test=4)
    run = tmp_path / "run"
    assert invoke("train", name, "--data", ds, "--out", run, *TRAIN, "--workers", "0",
                  "--quiet").exit_code == 0
    damage(tmp_path / "w" / "raw" / "aerial" / "test2.png", "flipped")
    res = invoke("eval", run, "--data", ds, "--quiet")
    assert res.exit_code == 2 and "test2.png: damaged image" in res.stderr
    res = invoke("eval", run, "--data", ds, "--on-bad-image", "skip", "--quiet")
    assert res.exit_code == 0, res.output
    assert "skipped 1 unreadable image(s)" in res.stderr
    out = run / "eval" / "tinyworld-test"
    assert (out / "bad_images.txt").read_text().split("\t")[0].endswith("test2.png")
    import pandas as pd

    row = pd.read_csv(out / "metrics.csv").iloc[-1]
    # the reference is left out; its query stays and, without a positive, counts as a miss
    assert row["n_reference"] == 3 and row["n_query"] == 4
    assert "1 of 4 queries have no positive" in res.stderr
