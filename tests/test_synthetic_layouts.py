"""The synthetic world writes the real CVUSA / VIGOR / VG layouts, deterministically."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from geobench.datasets.synthetic import SyntheticOptions, generate, plan_sites, prepare_synthetic
from geobench.datasets.synthetic.layouts import LOCATIONS_FILE
from geobench.errors import UsageError
from geobench.geometry import gps
from geobench.progress import set_quiet

FAST = {"spacing_m": 20.0}


def _gen(root: Path, **kw) -> Path:
    set_quiet(True)
    kw.setdefault("difficulty", FAST)
    kw.setdefault("cities", 1)
    kw.setdefault("workers", 1)
    return generate(SyntheticOptions(out=root, **kw))


@pytest.fixture(scope="module")
def cvusa(tmp_path_factory) -> Path:
    return _gen(tmp_path_factory.mktemp("syn") / "raw", pairs=10, test_pairs=4, seed=5,
                cities=2)


@pytest.fixture(scope="module")
def vigor(tmp_path_factory) -> Path:
    return _gen(tmp_path_factory.mktemp("syn") / "raw", layout="vigor", pairs=14, test_pairs=6,
                seed=2)


def test_cvusa_layout_files_and_csvs(cvusa):
    for split, n in (("train", 10), ("val", 4)):
        text = (cvusa / "splits" / f"{split}-19zl.csv").read_text()
        lines = text.splitlines()
        assert len(lines) == n and text.endswith("\n")
        for line in lines:
            a, g, s = line.split(",")
            m = re.fullmatch(r"bingmap/19/(\d{7})\.jpg", a)
            assert m, line
            assert g == f"streetview/panos/{m.group(1)}.jpg"
            assert s == f"streetview/annotations/{m.group(1)}.png"
            assert (cvusa / s).is_file()
            assert cv2.imread(str(cvusa / a)).shape == (256, 256, 3)
            assert cv2.imread(str(cvusa / g)).shape == (112, 616, 3)
    ids = [line[11:18] for sp in ("train", "val")
           for line in (cvusa / "splits" / f"{sp}-19zl.csv").read_text().splitlines()]
    assert sorted(ids) == [f"{k:07d}" for k in range(1, 15)]
    maps = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            for p in sorted((cvusa / "streetview/annotations").glob("*.png"))]
    assert len(maps) == 14 and all(m.ndim == 2 and m.max() <= 7 for m in maps)
    assert np.mean([(m[:20] == 0).mean() for m in maps]) > 0.3   # sky at the top
    loc = pd.read_csv(cvusa / LOCATIONS_FILE)
    assert set(loc["city"]) == {"Alderton", "Brookfield"}
    e, n, zone, letter = gps.latlon_to_utm(loc["lat"].to_numpy(), loc["lon"].to_numpy())
    assert np.allclose(e, loc["utm_e"], atol=0.01) and np.allclose(n, loc["utm_n"], atol=0.01)


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "synthetic.json"}


def test_same_seed_same_bytes_for_any_worker_count_other_seed_differs(tmp_path):
    a = _gen(tmp_path / "a", pairs=3, test_pairs=2, seed=9, cities=2)
    b = _gen(tmp_path / "b", pairs=3, test_pairs=2, seed=9, cities=2, workers=2)
    da, db = _tree_digest(a), _tree_digest(b)
    assert len(da) == 5 * 3 + 3 and da == db     # 5 pairs x 3 images, 2 splits, locations
    where = [np.vstack([s.picked for s in plan_sites(SyntheticOptions(
        out=tmp_path / "x", pairs=3, test_pairs=2, seed=seed, difficulty=FAST))])
        for seed in (9, 9, 10)]
    assert np.array_equal(where[0], where[1]) and not np.array_equal(where[0], where[2])
    meta = [(r / "synthetic.json").read_text() for r in (a, b)]
    assert meta[0].replace(str(a), "") == meta[1].replace(str(b), "")


def test_refuses_non_empty_out_and_leaves_nothing_partial(tmp_path):
    out = tmp_path / "raw"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        _gen(out, pairs=2, test_pairs=1)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(UsageError, match="layout"):
        SyntheticOptions(out=tmp_path / "x", layout="cvact")
    with pytest.raises(UsageError, match="pairs"):
        SyntheticOptions(out=tmp_path / "x", pairs=0)
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def _vigor_lines(root: Path) -> list[tuple[str, list[str]]]:
    out = []
    for path in sorted((root / "splits").glob("*/same_area_balanced_*.txt")):
        for line in path.read_text().splitlines():
            out.append((path.parent.name, line.split(" ")))
    return out


def test_vigor_layout_labels_and_offsets_point_at_the_camera(vigor):
    S = 320
    g = 0.114 * 640 / S                        # metres per written pixel
    lines = _vigor_lines(vigor)
    assert len(lines) == 20
    positives: dict[str, int] = {}
    for city, f in lines:
        assert len(f) == 13
        pid, lat_s, lon_s, ext = f[0].split(",")
        assert ext == ".jpg" and len(pid) == 22 and len(lat_s.split(".")[1]) == 6
        assert (vigor / city / "panorama" / f[0]).is_file()
        lat, lon = float(lat_s), float(lon_s)
        dists = []
        for k, (sat, d0, d1) in enumerate(zip(f[1::3], f[2::3], f[3::3], strict=True)):
            assert re.fullmatch(r"-?\d+\.0", d0) and re.fullmatch(r"-?\d+\.0", d1)
            assert (vigor / city / "satellite" / sat).is_file()
            slat, slon = (float(v) for v in sat[len("satellite_"):-len(".png")].split("_"))
            # the camera's true pixel, from the two positions on the ellipsoid
            east, north, _ = gps.latlon_to_enu(lat, lon, slat, slon)
            row, col = S / 2 - north / g, S / 2 + east / g
            assert abs(S / 2 + float(d0) - row) <= 1.0 and abs(S / 2 - float(d1) - col) <= 1.0
            reach = max(abs(float(d0)), abs(float(d1)))
            assert reach <= S / 4 + 1 if k == 0 else S / 4 - 1 <= reach <= S / 2 + 1
            dists.append(float(d0) ** 2 + float(d1) ** 2)
        assert dists[1:] == sorted(dists[1:])
        positives[f[1]] = positives.get(f[1], 0) + 1
    assert max(positives.values()) <= 2       # "balanced"
    listing = (vigor / "splits" / "Alderton" / "satellite_list.txt").read_text().splitlines()
    assert set(listing) == {p.name for p in (vigor / "Alderton" / "satellite").iterdir()}
    img = cv2.imread(str(vigor / "Alderton" / "satellite" / listing[0]))
    assert img.shape == (320, 320, 3)
    every = (vigor / "splits" / "Alderton" / "pano_label_balanced.txt").read_text().splitlines()
    assert len(every) == 20


def test_vigor_offset_pixel_shows_the_street(vigor):
    """The pixel the label points at is on a road (the camera stands on the carriageway)."""
    hits = 0
    for city, f in _vigor_lines(vigor)[:10]:
        img = cv2.imread(str(vigor / city / "satellite" / f[1])).astype(int)
        r, c = int(round(160 + float(f[2]))), int(round(160 - float(f[3])))
        patch = img[max(0, r - 2):r + 3, max(0, c - 2):c + 3].reshape(-1, 3)
        spread = patch.max(axis=1) - patch.min(axis=1)   # asphalt is grey: low chroma
        hits += int(np.median(spread) < 30)
    assert hits >= 8


def test_vg_layout_names(tmp_path):
    root = _gen(tmp_path / "raw", layout="vg", pairs=3, test_pairs=2, seed=4, vg_crops=2)
    for split in ("train", "val", "test"):
        for folder in ("database", "queries"):
            assert any((root / "images" / split / folder).glob("*.jpg")), (split, folder)
    loc = pd.read_csv(root / LOCATIONS_FILE)
    for p in sorted((root / "images").rglob("*.jpg"))[:30]:
        f = p.name.split("@")
        assert len(f) == 16 and f[0] == "" and f[15] == ".jpg"
        assert re.fullmatch(r"\d{7}\.\d{2}", f[1]) and re.fullmatch(r"\d{7}\.\d{2}", f[2])
        assert re.fullmatch(r"\d{2}", f[3]) and f[4] == "T"
        assert re.fullmatch(r"[-0]\d{2}\.\d{5}", f[5]) and re.fullmatch(r"-\d{3}\.\d{5}", f[6])
        assert re.fullmatch(r"\d{3}", f[9])
        e, n, zone, letter = gps.latlon_to_utm(float(f[5]), float(f[6]))
        assert abs(e - float(f[1])) < 2 and abs(n - float(f[2])) < 2 and int(f[3]) == zone
        row = loc[loc["path"] == str(p.relative_to(root))].iloc[0]
        assert abs(row["utm_e"] - float(f[1])) < 0.006
        assert cv2.imread(str(p)).shape == (240, 320, 3)
    q = loc[(loc["split"] == "test") & (loc["role"] == "query")]
    db = loc[(loc["split"] == "test") & (loc["role"] == "reference")]
    d = np.hypot(q["utm_e"].to_numpy()[:, None] - db["utm_e"].to_numpy()[None],
                 q["utm_n"].to_numpy()[:, None] - db["utm_n"].to_numpy()[None])
    assert (d.min(axis=1) < 25).all()          # every test query has a 25 m positive


def test_prepare_synthetic_through_the_adapter(tmp_path):
    import geobench.datasets as datasets

    if not hasattr(datasets, "prepare_dataset"):
        pytest.skip("adapters (geobench.datasets.prepare_dataset) not available yet")
    set_quiet(True)
    opts = SyntheticOptions(out=tmp_path / "raw", pairs=4, test_pairs=2, cities=1,
                            difficulty=FAST)
    prepared = prepare_synthetic(opts, tmp_path)
    idx = prepared.index
    assert len(idx[(idx["split"] == "train") & (idx["view"] == "ground")]) == 4
    assert len(idx[(idx["split"] == "test") & (idx["view"] == "aerial")]) == 2
