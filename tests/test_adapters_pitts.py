"""pitts30k / pitts250k from the raw NetVLAD release (datasets/*.mat dbStructs)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from geobench.datasets import prepare_dataset
from geobench.datasets.pitts import is_raw_layout, load_db_struct
from geobench.errors import DataError, UsageError
from geobench.prepared import read_prepared
from tests import adapter_layouts as layouts


def test_db_struct_is_a_real_matlab_struct(tmp_path):
    from scipy.io import loadmat

    raw = layouts.pitts_raw(tmp_path / "raw_data", splits=("test",))
    fields = loadmat(str(raw / "datasets/pitts30k_test.mat"))["dbStruct"].item()
    assert [f[0].item() for f in fields[1]][0] == "000/000000_pitch1_yaw1.jpg"
    assert fields[2].shape == (2, 6) and fields[4].shape == (2, 3)  # 2xN as in the release
    s = load_db_struct(raw / "datasets/pitts30k_test.mat")
    assert s.db_files[:2] == ["000/000000_pitch1_yaw1.jpg", "000/000001_pitch2_yaw2.jpg"]
    assert s.db_utm.shape == (6, 2) and s.db_utm[1].tolist() == [585008.0, 4477000.0]
    assert s.q_utm.shape == (3, 2) and s.pos_dist_thr == 25.0


def test_raw_release_is_indexed_with_radius_positives(tmp_path):
    from geobench.geometry.gps import latlon_to_utm

    raw = layouts.pitts_raw(tmp_path / "raw_data")
    assert is_raw_layout(raw, "pitts30k")
    ds = prepare_dataset("pitts30k", raw, tmp_path / "ds", {})
    back = read_prepared(tmp_path / "ds", check_files=True)
    assert back.raw_root == raw.resolve()
    for split in ("train", "test"):
        assert len(back.select(split, "reference", "street")) == 6
        assert len(back.select(split, "query", "street")) == 3
    q = back.select("test", "query")
    assert q["path"].str.startswith("queries_real/000/").all()
    assert back.select("test", "reference")["path"].str.match(r"000/\d{6}_pitch\d_yaw\d+\.jpg").all()
    assert back.index["uid"].is_unique and back.index["heading"].isna().all()
    # lat/lon come from UTM zone 17T and map back onto the stored UTM
    assert np.allclose(q["lat"], 40.44, atol=0.01) and np.allclose(q["lon"], -79.99, atol=0.01)
    e, n, zone, letter = latlon_to_utm(q["lat"].to_numpy(), q["lon"].to_numpy())
    assert np.allclose(e, q["utm_e"], atol=1e-3) and np.allclose(n, q["utm_n"], atol=1e-3)
    assert set(zone) == {17} and set(letter) == {"T"}
    for split, kind, radius in (("test", "positive", 25.0), ("train", "positive", 25.0),
                                ("train", "train_positive", 10.0)):
        qs, rs = back.select(split, "query"), back.select(split, "reference")
        d = np.hypot(qs["utm_e"].to_numpy()[:, None] - rs["utm_e"].to_numpy()[None],
                     qs["utm_n"].to_numpy()[:, None] - rs["utm_n"].to_numpy()[None])
        brute = {(qs["uid"].iloc[i], rs["uid"].iloc[j]) for i, j in zip(*np.nonzero(d <= radius), strict=True)}
        got = back.positives[(back.positives["split"] == split) & (back.positives["kind"] == kind)]
        assert set(zip(got["query"], got["reference"], strict=True)) == brute and brute
    assert not (back.positives["kind"] == "train_positive")[back.positives["split"] == "test"].any()
    params = ds.manifest["parameters"]
    assert params["layout"] == "netvlad raw release" and params["utm_zone"] == "17T"
    assert params["pos_dist_thr_in_mat"] == {"train": 25.0, "test": 25.0}


def test_raw_root_variants_and_pitts250k(tmp_path):
    # VPR-datasets-downloader keeps the release under datasets/pitts250k/raw_data/
    raw = layouts.pitts_raw(tmp_path / "datasets/pitts250k/raw_data", name="pitts250k",
                            splits=("val",))
    ds = prepare_dataset("pitts250k", tmp_path / "datasets/pitts250k", tmp_path / "ds", {})
    assert set(ds.index["split"]) == {"val"} and ds.raw_root == raw.resolve()
    ds = prepare_dataset("pitts250k", raw / "datasets", tmp_path / "ds2", {})
    assert len(ds.index) == 9
    ds.check_files()
    # a formatted images/ tree next to it takes precedence
    layouts.vg(tmp_path / "datasets/pitts250k")
    assert not is_raw_layout(tmp_path / "datasets/pitts250k", "pitts250k")


def test_fields_are_read_by_position_when_renamed(tmp_path):
    raw = layouts.pitts_raw(tmp_path / "raw", splits=("test",))
    s = load_db_struct(raw / "datasets/pitts30k_test.mat")
    names = tuple(f"f{k}" for k in range(10))
    path = layouts.pitts_mat(tmp_path / "renamed.mat", "test", s.db_files, s.db_utm, s.q_files,
                             s.q_utm, names=names)
    again = load_db_struct(path)
    assert again.db_files == s.db_files and np.array_equal(again.q_utm, s.q_utm)


def test_missing_images_are_counted_or_fatal_with_strict(tmp_path):
    raw = layouts.pitts_raw(tmp_path / "raw", splits=("test",))
    (raw / "queries_real/000/000001_pitch2_yaw4.jpg").unlink()
    ds = prepare_dataset("pitts30k", raw, tmp_path / "ds", {})
    assert ds.manifest["missing_images"] == {"street": 1}
    assert len(ds.select("test", "query")) == 2
    with pytest.raises(DataError, match=r"queries_real/000/000001_pitch2_yaw4\.jpg: missing image"):
        prepare_dataset("pitts30k", raw, tmp_path / "ds2", {"strict": True})


def test_missing_mat_files(tmp_path):
    raw = layouts.pitts_raw(tmp_path / "raw", splits=("test",))
    with pytest.raises(DataError, match=r"pitts30k_val\.mat: file not found.*leave val out"):
        prepare_dataset("pitts30k", raw, tmp_path / "ds", {"splits": ("val",)})
    with pytest.raises(UsageError, match="unknown split 'dev'"):
        prepare_dataset("pitts30k", raw, tmp_path / "ds", {"splits": ("dev",)})
    with pytest.raises(UsageError, match="apply to the images/<split>/ layout"):
        prepare_dataset("pitts30k", raw, tmp_path / "ds", {"queries_folder": "queries_v1"})
    (raw / "datasets/pitts30k_test.mat").unlink()
    with pytest.raises(DataError, match=r"raw/datasets/pitts30k_test\.mat: file not found; the raw "
                                        r"Pittsburgh layout needs"):
        prepare_dataset("pitts30k", raw, tmp_path / "ds", {})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no images/<split>/ folder found.*or at the raw "
                                        r"release folder with datasets/pitts30k_test\.mat"):
        prepare_dataset("pitts30k", tmp_path / "empty", tmp_path / "ds", {})
    assert not (tmp_path / "ds").exists()


def _bad_mats(tmp_path):
    db, q = ["000/000000_pitch1_yaw1.jpg", "000/000001_pitch1_yaw2.jpg"], ["000/000000_pitch2_yaw1.jpg"]
    utm_db, utm_q = np.array([[585000.0, 4477000.0], [585008.0, 4477000.0]]), np.array([[585001.0, 4477001.0]])
    from scipy.io import savemat

    def mat(name, **kw):
        args = dict(which="test", db=db, db_utm=utm_db, q=q, q_utm=utm_q)
        args.update(kw)
        return layouts.pitts_mat(tmp_path / "bad" / name, **args)

    (tmp_path / "bad").mkdir()
    other = tmp_path / "bad/other.mat"
    savemat(str(other), {"something": np.zeros(3)})
    flat = tmp_path / "bad/flat.mat"
    savemat(str(flat), {"dbStruct": np.arange(4.0)})
    junk = tmp_path / "bad/junk.mat"
    junk.write_bytes(b"MATLAB 5.0 MAT-file, definitely not" + b"\x00" * 10)
    return [
        (mat("shape.mat", db_utm=utm_db[:1]), r"utmDb has shape \(2, 1\), expected \(2, 2\)"),
        (mat("count.mat", num_db=5), r"numDb is 5 but the file list has 2 entries"),
        (mat("entry.mat", q=["/etc/passwd.jpg"]), r"qImageFns entry 1 is '/etc/passwd\.jpg'"),
        (mat("dup.mat", db=[db[0], db[0]]), r"dbImageFns lists 000/000000_pitch1_yaw1\.jpg twice"),
        (mat("few.mat", names=("whichSet", "dbImageFns", "utmDb")), r"no field qImageFns"),
        (other, r"no dbStruct variable \(found: something\)"),
        (flat, r"dbStruct is not a 1x1 MATLAB struct"),
        (junk, r"not a readable MATLAB file"),
    ]


def test_malformed_db_struct_errors_name_the_file(tmp_path):
    for path, message in _bad_mats(tmp_path):
        with pytest.raises(DataError) as info:
            load_db_struct(path)
        text = str(info.value)
        assert text.startswith(f"{path}: ") and "\n" not in text, text
        assert re.search(message, text), text


def test_pitts_raw_cli_error_is_one_line(invoke, tmp_path):
    raw = layouts.pitts_raw(tmp_path / "raw", splits=("test",))
    s = load_db_struct(raw / "datasets/pitts30k_test.mat")
    layouts.pitts_mat(raw / "datasets/pitts30k_test.mat", "test", s.db_files, s.db_utm[:2],
                      s.q_files, s.q_utm)
    res = invoke("prepare", "pitts30k", "--root", raw, "--out", tmp_path / "ds")
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert "pitts30k_test.mat: malformed dbStruct (utmDb has shape (2, 2), expected (2, 6)" \
        in res.output
    assert not (tmp_path / "ds").exists()
    layouts.pitts_mat(raw / "datasets/pitts30k_test.mat", "test", s.db_files, s.db_utm,
                      s.q_files, s.q_utm)
    res = invoke("prepare", "pitts30k", "--root", raw, "--out", tmp_path / "ds", "--quiet")
    assert res.exit_code == 0, res.output
    assert "positive" in res.stdout


def test_doctor_checks_the_raw_release(tmp_path):
    from geobench.doctor import doctor

    raw = layouts.pitts_raw(tmp_path / "raw", splits=("test",))
    report = doctor("pitts30k", raw)
    checks = {c.name: c for c in report.checks}
    assert report.usable and checks["layout"].status == "ok"
    assert "test/query/street: 3 (release: 6816)" in checks["counts"].detail
    assert "train/" not in checks["counts"].detail  # only the splits present are compared
    image = raw / "queries_real/000/000000_pitch2_yaw3.jpg"
    image.write_bytes(image.read_bytes()[:40])
    report = doctor("pitts30k", raw)
    assert not report.usable
    assert "queries_real/000/000000_pitch2_yaw3.jpg" in {c.name: c for c in report.checks}[
        "damaged images"].detail
