"""VG-format adapters (pitts30k, pitts250k, msls, sf_xl, tokyo247) on tiny real trees."""
from __future__ import annotations

import os

import numpy as np
import pytest

from geobench.datasets import DATASETS, prepare_dataset
from geobench.datasets.vg import parse_name
from geobench.errors import DataError, UsageError
from geobench.prepared import read_prepared
from tests import adapter_layouts as layouts


def test_every_vg_name_is_registered():
    for name in ("pitts30k", "pitts250k", "msls", "sf_xl", "tokyo247"):
        assert name in DATASETS


def test_parse_real_names(tmp_path):
    sf = parse_name(tmp_path / "x@y" / "@0544000.32@4177609.18@10@S@037.74472@-122.50057@"
                                     "NY0VsOD8K4d0YA9fd0CCGA@@0@@@@201708@@.jpg")
    assert (sf.east, sf.north, sf.zone, sf.lat, sf.lon, sf.heading) == (
        544000.32, 4177609.18, "10S", 37.74472, -122.50057, 0.0)
    tokyo = parse_name(tmp_path / "@0381904.46@3946329.36@54@S@035.65375@0139.69540@00399.jpg"
                                  "@@@@@@@@.jpg")
    assert tokyo.heading is None and tokyo.pano == "00399.jpg" and tokyo.lon == 139.6954
    with pytest.raises(DataError, match=r"IMG_0001\.jpg: file name does not follow the VG"):
        parse_name(tmp_path / "IMG_0001.jpg")


def test_positives_by_radius_with_train_positives(tmp_path):
    raw = layouts.vg(tmp_path / "pitts30k", splits=("train", "test"))
    ds = prepare_dataset("pitts30k", raw, tmp_path / "ds", {})
    back = read_prepared(tmp_path / "ds", check_files=True)
    assert len(back.select("test", "reference", "street")) == 6
    assert len(back.select("test", "query", "street")) == 3
    idx = back.index.set_index("uid")
    for split in ("train", "test"):
        q = back.select(split, "query")
        r = back.select(split, "reference")
        for kind, radius in (("positive", 25.0), ("train_positive", 10.0)):
            got = back.positives[(back.positives["split"] == split) &
                                 (back.positives["kind"] == kind)]
            if kind == "train_positive" and split == "test":
                assert got.empty
                continue
            d = np.hypot(q["utm_e"].to_numpy()[:, None] - r["utm_e"].to_numpy()[None],
                         q["utm_n"].to_numpy()[:, None] - r["utm_n"].to_numpy()[None])
            brute = {(q["uid"].iloc[i], r["uid"].iloc[j]) for i, j in zip(*np.nonzero(d <= radius), strict=True)}
            assert set(zip(got["query"], got["reference"], strict=True)) == brute and brute
            e = idx.loc[got["query"], "utm_e"].to_numpy() - idx.loc[got["reference"], "utm_e"].to_numpy()
            n = idx.loc[got["query"], "utm_n"].to_numpy() - idx.loc[got["reference"], "utm_n"].to_numpy()
            assert np.allclose(got["distance_m"], np.hypot(e, n))
    assert back.index["heading"].notna().sum() == 12  # database headings parsed, queries blank
    assert ds.manifest["parameters"]["eval_radius_m"] == 25.0


def test_sf_xl_uses_queries_v1_and_root_variants(tmp_path):
    raw = layouts.vg(tmp_path / "sf_xl", splits=("val", "test"), queries_folder="queries_v1")
    for split in ("val",):
        q = raw / "images" / split / "queries_v1"
        q.rename(raw / "images" / split / "queries")
    ds = prepare_dataset("sf_xl", raw / "images", tmp_path / "ds", {})
    assert ds.manifest["parameters"]["folders"]["test"]["queries"] == "queries_v1"
    assert ds.manifest["parameters"]["folders"]["val"]["queries"] == "queries"
    ds.check_files()
    ds = prepare_dataset("sf_xl", tmp_path, tmp_path / "ds2", {"splits": ("test",)})
    assert set(ds.index["split"]) == {"test"}
    with pytest.raises(DataError, match=r"queries_v2: folder not found"):
        prepare_dataset("sf_xl", raw, tmp_path / "ds3", {"queries_folder": "queries_v2",
                                                          "splits": ("test",)})


def test_msls_symlinked_test_split(tmp_path):
    raw = layouts.vg(tmp_path / "msls", splits=("val",))
    os.symlink("val", raw / "images" / "test")
    ds = prepare_dataset("msls", raw, tmp_path / "ds", {})
    assert len(ds.select("test")) == len(ds.select("val")) == 9
    assert ds.index["uid"].is_unique
    ds.check_files()


def test_vg_error_paths(tmp_path):
    with pytest.raises(DataError, match="no images/<split>/ folder"):
        prepare_dataset("tokyo247", tmp_path, tmp_path / "ds", {})
    raw = layouts.vg(tmp_path / "tokyo247")
    layouts.image(raw / "images/test/queries/holiday.jpg")
    with pytest.raises(DataError, match=r"holiday\.jpg: file name does not follow"):
        prepare_dataset("tokyo247", raw, tmp_path / "ds", {})
    (raw / "images/test/queries/holiday.jpg").unlink()
    layouts.image(raw / "images/test/queries" / layouts.vg_name(1.0, 2.0, 40.0, -79.0, zone="18"))
    with pytest.raises(DataError, match="span UTM zones 17T, 18T"):
        prepare_dataset("tokyo247", raw, tmp_path / "ds", {})
    with pytest.raises(UsageError, match="unknown split 'dev'"):
        prepare_dataset("tokyo247", raw, tmp_path / "ds", {"splits": ("dev",)})
    for f in (raw / "images/test/database").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"database: no \.jpg images found"):
        prepare_dataset("tokyo247", raw, tmp_path / "ds", {})
    assert not (tmp_path / "ds").exists()
