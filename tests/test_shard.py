"""--shard I/N | auto | merge: shares, scheduler variables, and polar run over shards equal
to one whole run (outputs byte for byte, the record field for field)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from geobench.cli import app
from geobench.errors import UsageError
from geobench.shard import MERGE, SHARDS_DIR, Shard, parse_shard

runner = CliRunner()


def test_shares_are_contiguous_cover_everything_and_never_overlap():
    for n in (0, 1, 2, 7, 10, 101):
        for count in (1, 2, 3, 8, 13):
            bounds = [Shard(i, count).share(n) for i in range(1, count + 1)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            sizes = [end - start for start, end in bounds]
            assert max(sizes) - min(sizes) <= 1  # balanced
    assert Shard(2, 3).share(10) == (3, 6) and Shard(3, 3).share(10) == (6, 10)


def test_parse_shard_forms_and_errors():
    assert parse_shard(None) is None
    assert parse_shard("2/8") == Shard(2, 8) and parse_shard(" merge ") == MERGE
    env = {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "5"}
    assert parse_shard("auto", env=env) == Shard(4, 5)
    assert parse_shard("auto", env={**env, "SLURM_ARRAY_TASK_MIN": "0"}) == Shard(5, 5)
    for bad in ("0/3", "4/3", "a/b", "3", "2/", "-1/2"):
        with pytest.raises(UsageError, match="expected I/N"):
            parse_shard(bad)
    with pytest.raises(UsageError, match="not set"):
        parse_shard("auto", env={})
    with pytest.raises(UsageError, match="give no share"):  # --array=0-4 without its MIN
        parse_shard("auto", env={"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "5"})


def _aerials(folder, n=7):
    rng = np.random.default_rng(0)
    for i in range(n):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sub / f"{i:02d}.png"), rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))


def _polar(src, dst, *extra):
    return runner.invoke(app, ["polar", str(src), str(dst), "--size", "8x16", "-q", *extra])


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".") and p.name != "polar.json"}


def _record(folder):
    rec = json.loads((folder / "polar.json").read_text())
    return {k: v for k, v in rec.items() if k not in ("stale_before", "versions")}


def test_polar_shards_then_merge_equal_one_run(tmp_path):
    src = tmp_path / "src"
    _aerials(src)
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    assert _polar(src, whole).exit_code == 0
    for i in (1, 2, 3):
        res = _polar(src, sharded, "--shard", f"{i}/3")
        assert res.exit_code == 0, res.output
        assert not (sharded / "polar.json").exists()  # only the merge writes the run's record
    assert sorted(p.name for p in (sharded / SHARDS_DIR).iterdir()) == [
        "polar.1-of-3.json", "polar.2-of-3.json", "polar.3-of-3.json"]
    res = _polar(src, sharded, "--shard", "2/3")  # a re-run resumes: nothing left to write
    assert res.exit_code == 0 and "│ 2 " in res.stdout.replace("┃", "│")
    res = _polar(src, sharded, "--shard", "merge")
    assert res.exit_code == 0, res.output
    images = _files(whole)
    assert len(images) == 7 and _files(sharded) == images  # every output, byte for byte
    assert _record(sharded) == _record(whole)  # the record, but for its time and versions
    assert not (sharded / SHARDS_DIR).exists()


def test_merge_refuses_missing_foreign_and_unfinished_shards(tmp_path):
    src = tmp_path / "src"
    _aerials(src)
    out = tmp_path / "out"
    assert _polar(src, out, "--shard", "1/3").exit_code == 0
    res = _polar(src, out, "--shard", "merge")
    assert res.exit_code != 0 and "shard(s) 2/3, 3/3 have no record" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (out / "polar.json").exists()
    assert _polar(src, out, "--shard", "2/2").exit_code == 0  # a share of another split
    res = _polar(src, out, "--shard", "merge")
    assert res.exit_code != 0 and "different splits" in res.stderr
    (out / SHARDS_DIR / "polar.2-of-2.json").unlink()
    for i in (2, 3):
        assert _polar(src, out, "--shard", f"{i}/3").exit_code == 0
    res = _polar(src, out, "--shard", "merge", "--size", "8x20")  # other parameters
    assert res.exit_code != 0 and "other parameters" in res.stderr
    victim = sorted(out.rglob("*.png"))[0]
    victim.unlink()
    res = _polar(src, out, "--shard", "merge")
    assert res.exit_code != 0 and f"{victim.name}: missing" in res.stderr
    res = _polar(src, out, "--shard", "0/3")
    assert res.exit_code != 0 and "expected I/N" in res.stderr


def _panoramas(folder, n=5):
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"p{i}.jpg"), rng.integers(0, 255, (16, 64, 3), dtype=np.uint8))


def _crop(src, dst, *extra):
    return runner.invoke(app, ["crop", str(src), str(dst), "--fov", "90", "--per-image", "2",
                               "--seed", "3", "-q", *extra])


def test_crop_shards_then_merge_equal_one_run(tmp_path):
    src = tmp_path / "panos"
    _panoramas(src)
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    assert _crop(src, whole).exit_code == 0
    for i in (2, 1):  # any order
        res = _crop(src, sharded, "--shard", f"{i}/2")
        assert res.exit_code == 0, res.output
    assert not (sharded / "crops.csv").exists()
    res = _crop(src, sharded, "--shard", "merge")
    assert res.exit_code == 0, res.output
    files = {p.relative_to(whole).as_posix(): p.read_bytes() for p in whole.rglob("*")
             if p.is_file() and not p.name.startswith(".") and p.name != "crops.json"}
    assert len(files) == 11  # 10 crops + crops.csv (random yaws, seeded by source)
    assert {k: (sharded / k).read_bytes() for k in files} == files
    drop = ("stale_before", "versions")
    rec = [{k: v for k, v in json.loads((d / "crops.json").read_text()).items() if k not in drop}
           for d in (whole, sharded)]
    assert rec[0] == rec[1] and not (sharded / SHARDS_DIR).exists()


def test_crop_shard_refuses_a_dataset_source(tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "manifest.json").write_text("{}")
    res = _crop(ds, tmp_path / "out", "--shard", "1/2")
    assert res.exit_code != 0 and "prepared dataset" in res.stderr
    assert not (tmp_path / "out").exists()
