from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from geobench.errors import DataError, UsageError
from geobench.geometry.crops import CropParams, perspective_crop, shift_crop, shift_for_yaw, wrap180
from geobench.geometry.cropset import crop_dataset, crop_folder
from geobench.prepared import read_prepared, write_prepared


def marker_pano(H: int, W: int, bearing: float, elevation: float = 0.0, full: bool = True,
                radius_deg: float = 3.0) -> np.ndarray:
    """Equirectangular panorama (north at the centre column) with a red disc at a bearing."""
    Hf = W // 2 if full else H
    top = 0 if full else (W // 2 - H) / 2
    rows, cols = np.mgrid[0:H, 0:W].astype(float)
    heading = np.radians(360.0 * cols / W - 180.0)
    elev = np.radians(90.0 - (rows + top + 0.5) * 180.0 / (W / 2))
    d = np.stack([np.cos(elev) * np.sin(heading), np.cos(elev) * np.cos(heading),
                  np.sin(elev)], -1)
    b, e = np.radians(bearing), np.radians(elevation)
    target = np.array([np.cos(e) * np.sin(b), np.cos(e) * np.cos(b), np.sin(e)])
    angle = np.degrees(np.arccos(np.clip(d @ target, -1, 1)))
    img = np.full((H, W, 3), 40, np.uint8)
    img[angle < radius_deg] = (0, 0, 255)
    assert Hf > 0
    return img


def red_centroid(img: np.ndarray) -> tuple[float, float]:
    mask = (img[..., 2] > 150) & (img[..., 1] < 100)
    rows, cols = np.nonzero(mask)
    assert rows.size, "marker not visible"
    return rows.mean(), cols.mean()


@pytest.mark.parametrize("bearing", [0.0, 75.0, 180.0, -150.0, 179.0])
def test_marker_at_a_bearing_is_centred_in_a_perspective_crop_at_that_yaw(bearing):
    pano = marker_pano(128, 256, bearing)
    crop = perspective_crop(pano, fov=60, yaw=bearing, out_hw=(64, 64))
    r, c = red_centroid(crop)
    assert abs(r - 31.5) < 1.0 and abs(c - 31.5) < 1.0
    off = perspective_crop(pano, fov=60, yaw=bearing + 20, out_hw=(64, 64))
    assert red_centroid(off)[1] < 31.5 - 10     # turning right moves it left


def test_pitch_and_band_padding():
    pano = marker_pano(128, 256, 30.0, elevation=20.0)
    r, c = red_centroid(perspective_crop(pano, 60, 30.0, 20.0, (64, 64)))
    assert abs(r - 31.5) < 1.0 and abs(c - 31.5) < 1.0
    assert red_centroid(perspective_crop(pano, 60, 30.0, 0.0, (64, 64)))[0] < 20  # above
    band = marker_pano(48, 256, -60.0, elevation=5.0, full=False)   # CVUSA-like band
    crop = perspective_crop(band, 90, -60.0, 5.0, (64, 64))
    r, c = red_centroid(crop)
    assert abs(r - 31.5) < 1.0 and abs(c - 31.5) < 1.0
    tilted = perspective_crop(band, 90, -60.0, 60.0, (64, 64))
    assert (tilted[:10] == 0).all()                     # padding above the band is black
    with pytest.raises(DataError, match="not 2:1"):
        perspective_crop(band, 90, 0, 0, (8, 8), pad="none", source="p.jpg")
    with pytest.raises(DataError, match="taller than 2:1"):
        perspective_crop(np.zeros((100, 100, 3), np.uint8), 90, 0, 0, (8, 8))


def test_straight_lines_stay_straight():
    """A 3D line projects to a great circle in the panorama and to a straight line in any
    pinhole view; fit a line to the rendered pixels."""
    H, W = 256, 512
    rows, cols = np.mgrid[0:H, 0:W].astype(float)
    heading = np.radians(360.0 * cols / W - 180.0)
    elev = np.radians(90.0 - (rows + 0.5) * 180.0 / H)
    d = np.stack([np.cos(elev) * np.sin(heading), np.cos(elev) * np.cos(heading),
                  np.sin(elev)], -1)
    normal = np.array([0.3, -0.4, 0.87])
    normal /= np.linalg.norm(normal)
    line = np.clip(1 - np.abs(d @ normal) / 0.01, 0, 1)
    pano = (np.stack([line] * 3, -1) * 255).astype(np.uint8)
    checked = 0
    for yaw, pitch in ((10.0, 0.0), (100.0, 15.0), (-170.0, -10.0), (-80.0, 30.0)):
        crop = perspective_crop(pano, 80, yaw, pitch, (96, 96)).astype(float)[..., 0]
        rr, cc = np.nonzero(crop > 128)
        if rr.size < 40:
            continue
        pts = np.stack([cc, rr], 1) - [cc.mean(), rr.mean()]
        _, s, vt = np.linalg.svd(pts, full_matrices=False)
        residual = np.abs(pts @ vt[1])
        assert residual.max() < 1.5, (yaw, pitch, residual.max())
        assert s[0] > 10 * s[1]
        checked += 1
    assert checked >= 2


def test_shift_crop_follows_dsm_and_records_the_true_heading():
    W = 512
    pano = np.tile(np.arange(W, dtype=np.uint16)[None, :, None], (4, 1, 1))
    crop, yaw = shift_crop(pano, 90.0, 100)
    j = np.arange(W)
    assert np.array_equal(crop[0, :, 0], ((j - 100) % W)[:128])
    dsm = ((W - 100) / W * 360 + 90 / 2) % 360 - 180    # DSM's orien_gth formula
    assert yaw == pytest.approx(float(wrap180(dsm)))
    centre_col = int(crop[0, 64, 0])
    assert yaw == pytest.approx(float(wrap180(360 * centre_col / W - 180)), abs=0.71)
    s = shift_for_yaw(45.0, 90.0, W)
    assert shift_crop(pano, 90.0, s)[1] == pytest.approx(45.0, abs=360 / W)
    assert shift_crop(pano, 360.0, 0)[1] == 0.0          # full pano: north at centre


def write_panos(folder, n=3, H=32, W=128):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        pano = marker_pano(H, W, 40.0 * k)
        cv2.imwrite(str(folder / f"p{k}.png"), pano)


def test_crop_folder_is_reproducible_and_writes_crops_csv(tmp_path):
    write_panos(tmp_path / "src" / "a")
    params = CropParams(fov=90, mode="perspective", per_image=2, seed=7, size=(24, 32),
                        format="png")
    rep = crop_folder(tmp_path / "src", tmp_path / "one", params)
    rows = pd.read_csv(tmp_path / "one" / "crops.csv")
    assert list(rows.columns) == ["source", "output", "yaw", "pitch", "fov", "heading"]
    assert len(rows) == 6 and rep.written == 3
    assert rows["output"].iloc[0] == "a/p0_00.png"
    assert cv2.imread(str(tmp_path / "one" / "a/p0_01.png")).shape == (24, 32, 3)
    assert np.allclose(rows["heading"], rows["yaw"] % 360)
    crop_folder(tmp_path / "src", tmp_path / "two", params, workers=2)
    again = pd.read_csv(tmp_path / "two" / "crops.csv")
    pd.testing.assert_frame_equal(rows, again)
    assert (tmp_path / "one/a/p1_00.png").read_bytes() == (tmp_path / "two/a/p1_00.png").read_bytes()
    other = crop_folder(tmp_path / "src", tmp_path / "three", CropParams(
        fov=90, mode="perspective", per_image=2, seed=8, size=(24, 32), format="png"))
    assert not np.allclose(other.rows["yaw"], rows["yaw"])
    resumed = crop_folder(tmp_path / "src", tmp_path / "one", params)
    assert (resumed.written, resumed.skipped) == (0, 3)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "one" / "crops.csv"), rows)


def test_shift_mode_fixed_yaw_per_image(tmp_path):
    write_panos(tmp_path / "src", n=1, W=360)
    rep = crop_folder(tmp_path / "src", tmp_path / "out",
                      CropParams(fov=90, yaw=0.0, per_image=4, format="png"))
    assert rep.rows["yaw"].tolist() == pytest.approx([0.0, 90.0, -180.0, -90.0], abs=0.5)
    assert rep.rows["fov"].tolist() == [90.0] * 4
    assert cv2.imread(str(tmp_path / "out/p0_00.png")).shape == (32, 90, 3)


def test_crop_errors(tmp_path):
    with pytest.raises(UsageError, match="--fov"):
        CropParams(fov=0)
    with pytest.raises(UsageError, match="--fov"):
        CropParams(fov=200, mode="perspective")
    with pytest.raises(UsageError, match="--mode"):
        CropParams(fov=90, mode="fisheye")
    with pytest.raises(UsageError, match="--pitch needs --mode perspective"):
        CropParams(fov=90, pitch=10)
    with pytest.raises(DataError, match="not found"):
        crop_folder(tmp_path / "none", tmp_path / "out", CropParams(fov=90))
    src = tmp_path / "src"
    write_panos(src, n=1)
    (src / "broken.jpg").write_bytes(b"nope")
    rep = crop_folder(src, tmp_path / "out", CropParams(fov=90))
    assert rep.written == 1 and "broken.jpg" in rep.failed[0][1]
    with pytest.raises(DataError, match="broken.jpg"):
        crop_folder(src, tmp_path / "out2", CropParams(fov=90), strict=True)


def test_crop_dataset_becomes_a_perspective_query_benchmark(tmp_path):
    raw = tmp_path / "raw"
    write_panos(raw / "panos", n=3)
    rows, pos = [], []
    for k in range(3):
        rows.append({"uid": f"g{k}", "split": "test", "role": "query", "view": "ground",
                     "path": f"panos/p{k}.png", "item": str(k), "lat": 1.0 + k, "lon": 2.0,
                     "heading": 90.0 if k == 1 else np.nan})
        rows.append({"uid": f"a{k}", "split": "test", "role": "reference", "view": "aerial",
                     "path": f"sat/{k}.png", "item": str(k), "lat": 1.0 + k, "lon": 2.0})
        pos.append({"split": "test", "query": f"g{k}", "reference": f"a{k}", "kind": "positive"})
    write_prepared(tmp_path / "ds", rows, pos, dataset="toy", raw_root=raw)
    params = CropParams(fov=60, mode="perspective", yaw=10.0, per_image=2, size=(16, 16))
    rep = crop_dataset(tmp_path / "ds", tmp_path / "pv", params)
    ds = read_prepared(tmp_path / "pv", check_files=True)
    q = ds.select("test", "query")
    assert len(q) == 6 and set(q["view"]) == {"perspective"}
    assert set(ds.select("test", "reference")["uid"]) == {"g0", "g1", "g2"}
    g1 = q[q["item"] == "1"].sort_values("uid")
    assert g1["heading"].tolist() == pytest.approx([100.0, 280.0])   # pano heading + yaw
    assert set(zip(ds.positives["query"], ds.positives["reference"], strict=False)) == \
        {(u, u.split("#")[0]) for u in q["uid"]}
    assert rep.prepared.manifest["parameters"]["crops"]["fov"] == 60
    keep = crop_dataset(tmp_path / "ds", tmp_path / "keep", params, references="keep")
    kept = keep.prepared
    assert set(kept.select("test", "reference")["view"]) == {"aerial"}
    assert len(kept.positives) == 6 and set(kept.positives["reference"]) == {"a0", "a1", "a2"}


def test_cli_crop(tmp_path):
    from typer.testing import CliRunner

    from geobench.cli import app

    write_panos(tmp_path / "src", n=2)
    runner = CliRunner()
    res = runner.invoke(app, ["crop", str(tmp_path / "src"), str(tmp_path / "out"), "--fov",
                              "90", "--mode", "perspective", "--size", "16x16", "--seed", "3",
                              "--per-image", "2", "-q"])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "out/crops.csv")) == 4
    res = runner.invoke(app, ["crop", str(tmp_path / "src"), str(tmp_path / "o2"), "--fov",
                              "90", "--yaw", "north"])
    assert res.exit_code != 0 and "--yaw 'north'" in res.stderr
    res = runner.invoke(app, ["crop", str(tmp_path / "src"), str(tmp_path / "o3"), "--fov",
                              "400"])
    assert res.exit_code != 0 and "--fov" in res.stderr and not (tmp_path / "o3").exists()
