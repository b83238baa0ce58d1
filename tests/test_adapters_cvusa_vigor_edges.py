"""CVUSA and VIGOR adapter details that decide coordinates and counts (issue 18)."""
from __future__ import annotations

import numpy as np
import pytest

from geobench.datasets import prepare_dataset
from geobench.errors import DataError, UsageError
from tests import adapter_layouts as layouts

# --------------------------------------------------------------------------- CVUSA


def write_locations(raw, n: int) -> np.ndarray:
    """split_locations/all.csv: row k (1-based pair id k+1) = sat_lat, sat_lon, grd_lat,
    grd_lon, then an extra column the adapter must ignore."""
    rows = np.array([[40.0 + k / 100, -100.0 - k / 100, 41.0 + k / 100, -101.0 - k / 100, 7.0]
                     for k in range(n)])
    (raw / "split_locations").mkdir()
    np.savetxt(raw / "split_locations" / "all.csv", rows, delimiter=",", fmt="%.6f")
    return rows


def test_cvusa_locations_are_one_based_and_split_satellite_from_ground(tmp_path):
    raw = layouts.cvusa(tmp_path / "CVUSA")            # pair ids 0000001..0000005
    rows = write_locations(raw, 4)                      # no row for pair 5
    ds = prepare_dataset("cvusa", raw, tmp_path / "ds", {})
    idx = ds.index.set_index("uid")
    for pair in range(1, 5):
        lat_s, lon_s, lat_g, lon_g = rows[pair - 1, :4]
        a, g = idx.loc[f"aerial/{pair:07d}"], idx.loc[f"ground/{pair:07d}"]
        assert (a["lat"], a["lon"]) == (pytest.approx(lat_s), pytest.approx(lon_s))
        assert (g["lat"], g["lon"]) == (pytest.approx(lat_g), pytest.approx(lon_g))
        assert np.isfinite(g["utm_e"]) and np.isfinite(a["utm_n"])
    # pair 5 is past the file's end: no coordinates rather than a neighbour's or a crash
    assert np.isnan(idx.loc["ground/0000005", "lat"]) and np.isnan(idx.loc["aerial/0000005", "lon"])


def test_cvusa_pair_zero_has_no_location_row(tmp_path):
    raw = layouts.cvusa(tmp_path / "CVUSA", n_train=1, n_test=1)
    for name in ("train-19zl.csv", "val-19zl.csv"):   # rename pair 1 to pair 0
        csv = raw / "splits" / name
        csv.write_text(csv.read_text().replace("0000001", "0000000"))
    for sub in ("bingmap/19", "streetview/panos", "streetview/annotations"):
        for p in (raw / sub).glob("0000001.*"):
            p.rename(p.with_name("0000000" + p.suffix))
    write_locations(raw, 3)
    ds = prepare_dataset("cvusa", raw, tmp_path / "ds", {})
    idx = ds.index.set_index("uid")
    assert np.isnan(idx.loc["ground/0000000", "lat"])            # row -1 would be the last
    assert idx.loc["ground/0000002", "lat"] == pytest.approx(41.01)


def test_cvusa_bad_locations_file_is_a_one_line_error(tmp_path):
    raw = layouts.cvusa(tmp_path / "CVUSA")
    (raw / "split_locations").mkdir()
    (raw / "split_locations" / "all.csv").write_text("lat,lon,glat,glon\n1,2,3,4\n")
    with pytest.raises(DataError, match=r"all\.csv: not a numeric CSV .*optional"):
        prepare_dataset("cvusa", raw, tmp_path / "ds", {})


def test_cvusa_two_field_lines_and_unknown_split(tmp_path):
    raw = layouts.cvusa(tmp_path / "CVUSA")
    for name in ("train-19zl.csv", "val-19zl.csv"):
        csv = raw / "splits" / name
        csv.write_text("\n".join(",".join(line.split(",")[:2])
                                 for line in csv.read_text().splitlines()) + "\n")
    ds = prepare_dataset("cvusa", raw, tmp_path / "ds", {})
    assert len(ds.select("train", "query")) == 3 and len(ds.select("test", "query")) == 2
    csv = raw / "splits" / "val-19zl.csv"
    csv.write_text(csv.read_text() + "bingmap/19/0000009.jpg\n")
    with pytest.raises(DataError, match=r"val-19zl\.csv:3: malformed line"):
        prepare_dataset("cvusa", raw, tmp_path / "ds2", {})
    with pytest.raises(UsageError, match="unknown split 'val'"):
        prepare_dataset("cvusa", raw, tmp_path / "ds3", {"splits": ("val",)})


def test_cvusa_polar_off_records_none_and_model_size_is_used(tmp_path):
    import cv2

    raw = layouts.cvusa(tmp_path / "CVUSA", n_train=1, n_test=1)
    plain = prepare_dataset("cvusa", raw, tmp_path / "plain", {})
    assert plain.manifest["parameters"]["polar"] is None and plain.derived_dirs == ()
    assert set(plain.index["view"]) == {"ground", "aerial"}
    ds = prepare_dataset("cvusa", raw, tmp_path / "ds", {"polar": True, "model": "safa"})
    size = [112, 616]                                   # the SAFA card's polar input size
    assert ds.manifest["parameters"]["polar"] == {"size": size, "north": "center",
                                                  "radius": "safa", "stretch": "none"}
    path = ds.resolve(ds.select("train", "reference", "polar")["path"].iloc[0])
    assert cv2.imread(str(path)).shape == (*size, 3)
    stretched = prepare_dataset("cvusa", raw, tmp_path / "st", {"polar": True, "model": "safa",
                                                                "polar_stretch": "minmax"})
    assert stretched.manifest["parameters"]["polar"]["stretch"] == "minmax"
    img = cv2.imread(str(stretched.resolve(stretched.select("train", "reference", "polar")["path"].iloc[0])))
    assert img.min() == 0 and img.max() == 255  # each polar image spans 0..255
    with pytest.raises(UsageError, match="no polar input size on its card"):
        prepare_dataset("cvusa", raw, tmp_path / "d2", {"polar": True, "model": "convnext_gap"})


# --------------------------------------------------------------------------- VIGOR


def test_vigor_deleted_panorama_is_counted_missing(tmp_path):
    raw = layouts.vigor(tmp_path / "VIGOR")
    pano = sorted((raw / "Chicago/panorama").iterdir())[0]
    pano.unlink()
    ds = prepare_dataset("vigor", raw, tmp_path / "ds", {})
    assert ds.manifest["missing_images"] == {"ground": 1}
    n_queries = len(ds.select(role="query"))
    assert n_queries == 2 * 4 - 1


def test_vigor_malformed_panorama_names_are_refused(tmp_path):
    raw = layouts.vigor(tmp_path / "VIGOR")
    label = raw / "splits/Chicago/same_area_balanced_test.txt"
    lines = label.read_text().splitlines()
    for bad in ("pano,41.8,-87.6,.png", "41.8,-87.6,.jpg", "pano,north,-87.6,.jpg",
                "pano,41.8,west,.jpg"):
        label.write_text("\n".join([" ".join([bad, *lines[0].split()[1:]]), lines[1]]))
        with pytest.raises(DataError, match=r"test\.txt:1: malformed label line"):
            prepare_dataset("vigor", raw, tmp_path / "ds", {})


def test_vigor_label_lines_need_numeric_offsets_and_known_satellites(tmp_path):
    raw = layouts.vigor(tmp_path / "VIGOR")
    label = raw / "splits/Chicago/same_area_balanced_test.txt"
    lines = label.read_text().splitlines()
    fields = lines[0].split()
    for i in (2, 3, 12):
        broken = list(fields)
        broken[i] = "x"
        label.write_text("\n".join([" ".join(broken), lines[1]]))
        with pytest.raises(DataError, match=r"test\.txt:1: malformed label line"):
            prepare_dataset("vigor", raw, tmp_path / "ds", {})
    broken = list(fields)
    broken[10] = layouts.vigor_sat(1.0, 2.0)   # a satellite no city lists
    label.write_text("\n".join([" ".join(broken), lines[1]]))
    with pytest.raises(DataError, match=r"test\.txt:1: satellite satellite_1\.0_2\.0\.png is "
                                        r"not in splits/Chicago/satellite_list\.txt"):
        prepare_dataset("vigor", raw, tmp_path / "ds", {})


def test_vigor_satellite_names_are_checked(tmp_path):
    raw = layouts.vigor(tmp_path / "VIGOR")
    sat_list = raw / "splits/Chicago/satellite_list.txt"
    good = sat_list.read_text()
    for bad in ("satellite_41.9_-87.6.jpg", "sat_41.9_-87.6.png", "satellite_x_-87.6.png",
                "satellite_41.9_-87.6_2.png"):
        sat_list.write_text(good + "\n" + bad)
        with pytest.raises(DataError, match=r"satellite_list\.txt:10: malformed satellite"):
            prepare_dataset("vigor", raw, tmp_path / "ds", {})
    sat_list.write_text("")
    with pytest.raises(DataError, match=r"satellite_list\.txt: satellite list is empty"):
        prepare_dataset("vigor", raw, tmp_path / "ds", {})


def test_vigor_stray_root_satellite_folder_keeps_the_official_layout(tmp_path):
    raw = layouts.vigor(tmp_path / "VIGOR")
    (raw / "satellite").mkdir()                       # e.g. a half-finished rearrangement
    ds = prepare_dataset("vigor", raw, tmp_path / "ds", {})
    assert ds.manifest["parameters"]["layout"] == "official"
    (raw / "ground").mkdir()                          # both folders, but panoramas in place
    ds = prepare_dataset("vigor", raw, tmp_path / "ds2", {})
    assert ds.manifest["parameters"]["layout"] == "official"
    ds.check_files()


def test_vigor_positive_and_semi_positive_offsets(tmp_path):
    raw = layouts.vigor(tmp_path / "VIGOR")
    label = (raw / "splits/Chicago/same_area_balanced_test.txt").read_text().splitlines()[0]
    f = label.split()
    ds = prepare_dataset("vigor", raw, tmp_path / "ds", {})
    pos = ds.positives[ds.positives["query"] == f"ground/Chicago/{f[0]}"]
    assert pos["reference"].str.rsplit("/", n=1).str[1].tolist() == [f[1], f[4], f[7], f[10]]
    assert pos["kind"].tolist() == ["positive"] + ["semi_positive"] * 3
    assert pos["dy"].tolist() == [float(f[2]), float(f[5]), float(f[8]), float(f[11])]
    assert pos["dx"].tolist() == [-float(f[3]), -float(f[6]), -float(f[9]), -float(f[12])]
    assert pos["reference"].str.startswith("test/aerial/Chicago/").all()
    assert ds.manifest["protocol"] == "vigor_same"


@pytest.mark.parametrize("line", [
    "bingmap/19/0000009.jpg,panos/0000009.txt",                   # pano not an image
    "bingmap/19/0000009.txt,streetview/panos/0000009.jpg",        # aerial not an image
    "0000009.jpg,streetview/panos/0000009.jpg",                   # aerial without a folder
])
def test_cvusa_split_lines_need_two_images_and_an_aerial_folder(tmp_path, line):
    raw = layouts.cvusa(tmp_path / "CVUSA")
    csv = raw / "splits" / "val-19zl.csv"
    csv.write_text(csv.read_text() + line + "\n")
    with pytest.raises(DataError, match=rf"val-19zl\.csv:3: malformed line {line[:20]!r}"[:-1]):
        prepare_dataset("cvusa", raw, tmp_path / "ds", {})


def test_cvusa_malformed_line_is_quoted_up_to_80_characters(tmp_path):
    raw = layouts.cvusa(tmp_path / "CVUSA")
    csv = raw / "splits" / "val-19zl.csv"
    line = "bingmap/19/" + "x" * 100 + ".jpg"
    csv.write_text(csv.read_text() + line + "\n")
    with pytest.raises(DataError) as err:
        prepare_dataset("cvusa", raw, tmp_path / "ds", {})
    assert f"malformed line {line[:80]!r}; expected 'bingmap/19/NNNNNNN.jpg," in str(err.value)


def test_cvusa_nearest_complete_folder_wins_and_single_level_folders(tmp_path):
    data = tmp_path / "data"
    layouts.cvusa(data / "CVPR_subset")
    for d in ("bingmap/19", "streetview/panos", "streetview/annotations"):
        (data / d).mkdir(parents=True)           # empty look-alike folders one level up
    ds = prepare_dataset("cvusa", data, tmp_path / "ds", {})
    assert ds.raw_root == (data / "CVPR_subset").resolve() and len(ds.index) == 10
    # a CSV whose images sit one folder deep (no doubled-name variant to try)
    flat = tmp_path / "flat"
    (flat / "splits").mkdir(parents=True)
    for name, i in (("train-19zl.csv", 1), ("val-19zl.csv", 2)):
        layouts.image(flat / "aerial" / f"{i:07d}.jpg", 16, 16)
        layouts.image(flat / "pano" / f"{i:07d}.jpg", 8, 32)
        (flat / "splits" / name).write_text(f"aerial/{i:07d}.jpg,pano/{i:07d}.jpg\n")
    ds = prepare_dataset("cvusa", flat, tmp_path / "ds2", {})
    assert sorted(ds.index["path"]) == ["aerial/0000001.jpg", "aerial/0000002.jpg",
                                        "pano/0000001.jpg", "pano/0000002.jpg"]


def test_cvusa_write_polar_default_and_its_errors(tmp_path, monkeypatch):
    import cv2

    from geobench.datasets.cvusa import write_polar
    from geobench.geometry.polar import polar_transform

    raw = layouts.cvusa(tmp_path / "CVUSA", n_train=1, n_test=1)
    out = tmp_path / "out"
    write_polar(raw, out, [("bingmap/19/0000001.jpg", "polarmap/19/0000001.png")], (8, 24))
    want = polar_transform(cv2.imread(str(raw / "bingmap/19/0000001.jpg")), (8, 24))
    assert np.array_equal(cv2.imread(str(out / "polarmap/19/0000001.png")), want)
    (raw / "bingmap/19/0000002.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"CVUSA/bingmap/19/0000002\.jpg: damaged image"):
        write_polar(raw, out, [("bingmap/19/0000002.jpg", "p.png")], (8, 24))
    # encoded in memory (issue 25: libpng wrote to the file itself and printed raw errors)
    monkeypatch.setattr(cv2, "imencode", lambda *a, **k: (False, None))
    with pytest.raises(DataError, match=r"cannot encode a \(8, 24, 3\) image as \.png"):
        write_polar(raw, out, [("bingmap/19/0000001.jpg", "p.png")], (8, 24))
    assert not (out / "p.png").exists()


def test_cvusa_one_line_locations_file(tmp_path):
    raw = layouts.cvusa(tmp_path / "CVUSA", n_train=1, n_test=1)
    rows = write_locations(raw, 1)
    ds = prepare_dataset("cvusa", raw, tmp_path / "ds", {})
    idx = ds.index.set_index("uid")
    assert idx.loc["ground/0000001", "lat"] == pytest.approx(rows[0, 2])
    assert np.isnan(idx.loc["ground/0000002", "lat"])


def test_cvusa_empty_split_file(tmp_path):
    raw = layouts.cvusa(tmp_path / "CVUSA")
    (raw / "splits" / "val-19zl.csv").write_text("\n")
    with pytest.raises(DataError, match=r"val-19zl\.csv: split file is empty; restore it"):
        prepare_dataset("cvusa", raw, tmp_path / "ds", {})
