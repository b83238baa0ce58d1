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
    ds = prepare_dataset("msls", raw, tmp_path / "ds", {"protocol": "msls_val_all"})
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


def _msls_val(root, listed: int, other: int):
    """MSLS val as VPR-datasets-downloader formats it: the Mapillary key in the pano field,
    `listed` queries from the papers' 740 and `other` queries not on the list."""
    from geobench.datasets.msls import LIST_FILE

    keys = [ln.split()[1] for ln in LIST_FILE.read_text().splitlines()
            if ln.strip() and not ln.startswith("#")][:listed]
    raw = layouts.vg(root, splits=("val",), n_q=0)
    for j, key in enumerate(keys + [f"notListedKey{j:010d}" for j in range(other)]):
        layouts.image(raw / "images/val/queries" / layouts.vg_name(
            584000.0 + 16.0 * j + 1.0, 4477002.0, 40.44, -79.99, pano=key))
    os.symlink("val", raw / "images" / "test")
    return raw, keys


def test_msls_protocols_740_by_default_or_every_query(tmp_path):
    from geobench.datasets import DATASETS
    from geobench.datasets.msls import official_keys
    from geobench.train.evalplan import default_protocol

    assert len(official_keys()) == 740
    raw, keys = _msls_val(tmp_path / "msls", listed=3, other=2)
    ds = prepare_dataset("msls", raw, tmp_path / "ds", {})
    queries = ds.select("val")
    queries = queries[queries["role"] == "query"]
    assert sorted(p.split("@")[7] for p in queries["path"]) == sorted(keys)
    assert default_protocol(read_prepared(tmp_path / "ds")) == "msls_val_740"
    # The test split (a symlink to val) is the same query set.
    assert (ds.select("test")["role"] == "query").sum() == 3
    every = prepare_dataset("msls", raw, tmp_path / "all", {"protocol": "msls_val_all"})
    assert (every.select("val")["role"] == "query").sum() == 5
    assert default_protocol(read_prepared(tmp_path / "all")) == "msls_val_all"
    # The release counts checked (geobench doctor): 740 queries only for the papers' list.
    adapted = DATASETS.get("msls")(raw, tmp_path / "x", {"splits": ("val",)})
    assert adapted.expected_counts == {"val/reference/street": 18871, "val/query/street": 740}
    adapted = DATASETS.get("msls")(raw, tmp_path / "x", {"splits": ("val",),
                                                         "protocol": "msls_val_all"})
    assert adapted.expected_counts == {"val/reference/street": 18871}


def test_msls_protocol_errors(tmp_path):
    raw, _ = _msls_val(tmp_path / "msls", listed=0, other=2)
    with pytest.raises(DataError, match=r"none of its 2 queries is one of the 740 official MSLS "
                                        r"val queries.*--protocol msls_val_all"):
        prepare_dataset("msls", raw, tmp_path / "ds", {})
    with pytest.raises(UsageError, match="protocol 'msls_val' is not one of msls_val_740 | "):
        prepare_dataset("msls", raw, tmp_path / "ds", {"protocol": "msls_val"})
    with pytest.raises(UsageError, match=r"prepare tokyo247: --protocol is for msls"):
        prepare_dataset("tokyo247", layouts.vg(tmp_path / "tokyo"), tmp_path / "ds2",
                        {"protocol": "msls_val_all"})
