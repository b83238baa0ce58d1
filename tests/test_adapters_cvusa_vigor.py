"""CVUSA and VIGOR adapters against tiny copies of their real layouts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from geobench.datasets import prepare_dataset
from geobench.errors import DataError, UsageError
from geobench.prepared import read_prepared
from tests import adapter_layouts as layouts

# --------------------------------------------------------------------------- CVUSA


@pytest.mark.parametrize("doubled,crlf", [(False, False), (True, True)])
def test_cvusa_indexes_pairs_from_the_csvs(tmp_path, doubled, crlf):
    raw = layouts.cvusa(tmp_path / "CVUSA", doubled=doubled, crlf=crlf)
    # a pano in no split must not be indexed
    layouts.image(raw / ("streetview/streetview" if doubled else "streetview") / "panos" /
                  "0009999.jpg")
    ds = prepare_dataset("cvusa", raw, tmp_path / "ds", {})
    back = read_prepared(tmp_path / "ds", check_files=True)
    assert len(back.select("train", "query", "ground")) == 3
    assert len(back.select("test", "reference", "aerial")) == 2
    assert "0009999" not in set(back.index["item"])
    pos = back.positives
    assert len(pos) == 5 and set(pos["kind"]) == {"positive"}
    g = back.index.set_index("uid")
    for q, r in zip(pos["query"], pos["reference"], strict=True):
        assert g.loc[q, "item"] == g.loc[r, "item"]
    if doubled:
        assert back.index["path"].str.startswith(("bingmap/bingmap/19/",
                                                  "streetview/streetview/panos/")).all()
    assert ds.manifest["parameters"]["split_map"] == {"train-19zl.csv": "train",
                                                      "val-19zl.csv": "test"}


def test_cvusa_root_may_be_the_parent_folder(tmp_path):
    layouts.cvusa(tmp_path / "data" / "CVPR_subset")
    ds = prepare_dataset("cvusa", tmp_path / "data", tmp_path / "ds", {})
    assert ds.raw_root == (tmp_path / "data" / "CVPR_subset").resolve()
    ds.check_files()


def test_cvusa_polar_images_are_written_under_ds(tmp_path):
    import cv2

    raw = layouts.cvusa(tmp_path / "CVUSA", n_train=1, n_test=1)
    ds = prepare_dataset("cvusa", raw, tmp_path / "ds", {"polar": True, "polar_size": (8, 24)})
    polar = ds.select("test", "reference", "polar")
    assert len(polar) == 1 and ds.derived_dirs == ("polarmap",)
    path = ds.resolve(polar["path"].iloc[0])
    assert path.parent == tmp_path / "ds" / "polarmap" / "19"
    assert cv2.imread(str(path)).shape == (8, 24, 3)
    assert ds.manifest["parameters"]["polar"]["size"] == [8, 24]
    assert len(ds.positives) == 4


def test_cvusa_missing_images_are_counted_or_fatal_with_strict(tmp_path):
    raw = layouts.cvusa(tmp_path / "CVUSA")
    (raw / "bingmap/19/0000002.jpg").unlink()
    ds = prepare_dataset("cvusa", raw, tmp_path / "ds", {})
    assert ds.manifest["missing_images"] == {"aerial": 1}
    assert len(ds.select("train", "query")) == 2
    with pytest.raises(DataError, match=r"0000002\.jpg: missing image .*--strict"):
        prepare_dataset("cvusa", raw, tmp_path / "ds2", {"strict": True})
    assert not (tmp_path / "ds2").exists()


def test_cvusa_error_paths(tmp_path):
    with pytest.raises(DataError, match="dataset root not found"):
        prepare_dataset("cvusa", tmp_path / "nope", tmp_path / "ds", {})
    raw = layouts.cvusa(tmp_path / "CVUSA")
    (raw / "splits/val-19zl.csv").unlink()
    with pytest.raises(DataError, match=r"val-19zl\.csv: split file not found"):
        prepare_dataset("cvusa", raw, tmp_path / "ds", {})
    raw = layouts.cvusa(tmp_path / "CVUSA2")
    csv = raw / "splits/train-19zl.csv"
    csv.write_text(csv.read_text() + "bingmap/19/0000009.jpg;streetview/panos/0000009.jpg\n")
    with pytest.raises(DataError, match=r"train-19zl\.csv:4: malformed line"):
        prepare_dataset("cvusa", raw, tmp_path / "ds", {})
    raw = layouts.cvusa(tmp_path / "CVUSA3")
    with pytest.raises(DataError, match="none of the images"):
        prepare_dataset("cvusa", raw / "splits", tmp_path / "ds", {})
    with pytest.raises(UsageError, match="unknown option"):
        prepare_dataset("cvusa", raw, tmp_path / "ds", {"polr": True})
    assert not (tmp_path / "ds").exists()


def test_cvusa_duplicate_pair_names_both_lines(tmp_path):
    raw = layouts.cvusa(tmp_path / "CVUSA")
    val = raw / "splits/val-19zl.csv"
    val.write_text(val.read_text() + (raw / "splits/train-19zl.csv").read_text().splitlines()[0])
    with pytest.raises(DataError, match=r"val-19zl\.csv:3: pair id 0000001 already listed at "
                                        r".*train-19zl\.csv:1"):
        prepare_dataset("cvusa", raw, tmp_path / "ds", {})


# --------------------------------------------------------------------------- VIGOR


def test_vigor_same_area(tmp_path):
    raw = layouts.vigor(tmp_path / "VIGOR")
    ds = prepare_dataset("vigor", raw, tmp_path / "ds", {})
    # references: every satellite of every city, once per split, keyed by (city, name)
    assert len(ds.select("test", "reference", "aerial")) == 18
    assert len(ds.select("train", "reference", "aerial")) == 18
    assert len(ds.select("test", "query", "ground")) == 4
    pos = ds.positives
    per_query = pos.groupby("query")["kind"].agg(list)
    assert all(k == ["positive"] + ["semi_positive"] * 3 for k in per_query)
    idx = ds.index.set_index("uid")
    first = pos[pos["kind"] == "positive"].iloc[0]
    q, r = idx.loc[first["query"]], idx.loc[first["reference"]]
    assert q["city"] == r["city"] and r["item"] == q["item"]
    # the pano lies south-east of its positive's centre: rows down (dy > 0), columns right
    assert first["dy"] > 0 and first["dx"] > 0
    # the offsets put the pano where its GPS says (320 px per grid step)
    assert np.isclose(first["dy"], (r["lat"] - q["lat"]) / layouts.SAT_DLAT * 320, atol=0.1)
    assert np.isclose(first["dx"], (q["lon"] - r["lon"]) / layouts.SAT_DLON * 320, atol=0.1)
    assert 0 < first["distance_m"] < 15
    assert ds.manifest["parameters"]["protocol"] == "same"
    ds.check_files()


def test_vigor_cross_area_and_corrected_labels(tmp_path):
    raw = layouts.vigor(tmp_path / "VIGOR", corrected=True, trailing_newline=True)
    ds = prepare_dataset("vigor", raw, tmp_path / "ds", {
        "protocol": "cross", "corrected": True, "cross_train_cities": ("NewYork",),
        "cross_test_cities": ("Chicago",)})
    assert set(ds.select("train")["city"]) == {"NewYork"}
    assert set(ds.select("test")["city"]) == {"Chicago"}
    assert len(ds.select("test", "query")) == 4
    with pytest.raises(DataError, match=r"splits.*not found.*drop --corrected"):
        prepare_dataset("vigor", layouts.vigor(tmp_path / "V2"), tmp_path / "d2",
                        {"corrected": True})


def test_vigor_default_cross_cities_must_exist(tmp_path):
    raw = layouts.vigor(tmp_path / "VIGOR")
    with pytest.raises(DataError, match=r"SanFrancisco: city folder not found \(present: Chicago, "
                                        r"NewYork\)"):
        prepare_dataset("vigor", raw, tmp_path / "ds", {"protocol": "cross"})


def test_vigor_error_paths(tmp_path):
    raw = layouts.vigor(tmp_path / "VIGOR")
    label = raw / "splits/Chicago/same_area_balanced_test.txt"
    lines = label.read_text().splitlines()
    label.write_text("\n".join([lines[0], lines[1].rsplit(" ", 3)[0]]))
    with pytest.raises(DataError, match=r"same_area_balanced_test\.txt:2: malformed label line"):
        prepare_dataset("vigor", raw, tmp_path / "ds", {})
    # a New York satellite in Chicago's labels: mixed-up cities
    ny_sat = (raw / "splits/NewYork/satellite_list.txt").read_text().split()[4]
    fields = lines[0].split()
    fields[1] = ny_sat
    label.write_text("\n".join([" ".join(fields), lines[1]]))
    with pytest.raises(DataError, match=r"test\.txt:1: satellite .* belongs to NewYork, not "
                                        r"Chicago \(mixed-up cities\)"):
        prepare_dataset("vigor", raw, tmp_path / "ds", {})
    label.write_text("\n".join(lines))
    sat_list = raw / "splits/Chicago/satellite_list.txt"
    sat_list.write_text(sat_list.read_text() + "\nsatellite_41.9.png")
    with pytest.raises(DataError, match=r"satellite_list\.txt:10: malformed satellite name"):
        prepare_dataset("vigor", raw, tmp_path / "ds", {})
    with pytest.raises(UsageError, match="protocol 'diagonal'"):
        prepare_dataset("vigor", raw, tmp_path / "ds", {"protocol": "diagonal"})
    (raw / "splits/NewYork/same_area_balanced_train.txt").unlink()
    sat_list.write_text("\n".join(sat_list.read_text().splitlines()[:-1]))
    with pytest.raises(DataError, match=r"same_area_balanced_train\.txt: split file not found"):
        prepare_dataset("vigor", raw, tmp_path / "ds", {})
    assert not (tmp_path / "ds").exists()


def test_vigor_pano_in_the_wrong_city_folder(tmp_path):
    raw = layouts.vigor(tmp_path / "VIGOR")
    pano = next((raw / "Chicago/panorama").iterdir())
    pano.rename(raw / "NewYork/panorama" / pano.name)
    with pytest.raises(DataError, match="mixed-up cities"):
        prepare_dataset("vigor", raw, tmp_path / "ds", {})


def test_vigor_missing_satellite_drops_its_links(tmp_path):
    raw = layouts.vigor(tmp_path / "VIGOR")
    label = (raw / "splits/Chicago/same_area_balanced_test.txt").read_text().split()
    positive, semi = label[1], label[4]
    (raw / "Chicago/satellite" / semi).unlink()
    ds = prepare_dataset("vigor", raw, tmp_path / "ds", {})
    assert ds.manifest["missing_images"] == {"aerial": 1}
    assert not ds.positives["reference"].str.endswith(semi).any()
    (raw / "Chicago/satellite" / positive).unlink()
    ds = prepare_dataset("vigor", raw, tmp_path / "ds", {})
    assert len(ds.select("test", "query")) == 4 - 2  # both Chicago test panos lost their positive
    manifest = json.loads((tmp_path / "ds/manifest.json").read_text())
    assert manifest["missing_images"] == {"aerial": 2}


def test_vigor_sample4geo_rearranged_tree(tmp_path):
    raw = layouts.vigor(tmp_path / "VIGOR")
    for c in ("Chicago", "NewYork"):
        (raw / "ground").mkdir(exist_ok=True)
        (raw / "satellite").mkdir(exist_ok=True)
        (raw / c / "panorama").rename(raw / "ground" / c)
        (raw / c / "satellite").rename(raw / "satellite" / c)
    ds = prepare_dataset("vigor", raw, tmp_path / "ds", {})
    assert ds.manifest["parameters"]["layout"] == "sample4geo"
    assert len(ds.select(role="query")) == 8 and ds.manifest.get("missing_images", {}) == {}
    ds.check_files()


def test_vigor_crlf_bom_and_missing_final_newline(tmp_path):
    """Windows-edited split files (CRLF, a BOM) index exactly like the originals."""
    plain = prepare_dataset("vigor", layouts.vigor(tmp_path / "A"), tmp_path / "ds1", {})
    raw = layouts.vigor(tmp_path / "B")
    for path in (raw / "splits").rglob("*.txt"):
        text = path.read_text()
        assert not text.endswith("\n")  # as NewYork's satellite_list.txt
        path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    crlf = prepare_dataset("vigor", raw, tmp_path / "ds2", {})
    cols = ["query", "reference", "kind", "dy", "dx"]
    assert plain.positives[cols].equals(crlf.positives[cols])
    assert len(crlf.select("test", "reference", "aerial")) == 18
    assert not crlf.positives["reference"].str.contains("\r").any()
