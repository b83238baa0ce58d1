"""Edges of the GPS and polar geometry that decide published numbers (issue 18).

Each test here was written against a mutant that survived the rest of the suite: a
shifted zone boundary, a square crop taken from the wrong place, a size check that
let zero through.
"""
from __future__ import annotations

import numpy as np
import pytest

from geobench.errors import DataError, UsageError
from geobench.geometry import gps
from geobench.geometry.polar import (
    PolarParams,
    center_square,
    column_heading,
    polar_coords,
    polar_numpy,
    polar_transform,
)

# --------------------------------------------------------------------------- UTM zones


@pytest.mark.parametrize("lat, lon, zone", [
    # Svalbard: zones 31/33/35/37 over [0, 9), [9, 21), [21, 33), [33, 42), lat 72..84
    (78.0, 0.0, 31), (78.0, 8.99, 31), (78.0, 9.0, 33), (78.0, 9.5, 33), (78.0, 20.99, 33),
    (78.0, 21.0, 35), (78.0, 32.99, 35), (78.0, 33.0, 37), (78.0, 41.99, 37),
    (78.0, 42.0, 38), (84.0, 9.5, 33), (72.0, 9.5, 33), (71.99, 9.5, 32),
    (78.0, -0.01, 30),
    # south-west Norway: zone 32 over lon [3, 12), lat [56, 64)
    (56.0, 3.0, 32), (55.99, 3.0, 31), (63.99, 11.99, 32), (64.0, 5.0, 31), (60.0, 2.99, 31),
    (60.0, 12.0, 33),
    # the regular 6-degree zones, including their left edges
    (0.0, -180.0, 1), (0.0, -174.0, 2), (0.0, -174.01, 1), (45.0, 6.0, 32),
])
def test_utm_zone_boundaries(lat, lon, zone):
    assert gps.utm_zone(lat, lon) == zone


def test_utm_zone_broadcasts_and_zone_letters_cover_the_range():
    zones = gps.utm_zone(np.array([78.0, 60.0, 0.0]), np.array([9.5, 5.0, 3.0]))
    assert zones.tolist() == [33, 32, 31]
    assert [gps.zone_letter(v) for v in (-80.0, -72.01, -72.0, 0.0, -0.01, 71.99, 72.0, 84.0)] \
        == ["C", "C", "D", "N", "M", "W", "X", "X"]
    with pytest.raises(UsageError, match="outside the UTM range"):
        gps.zone_letter(-80.01)


def test_forced_zone_must_be_a_real_zone():
    for zone in (0, 61):
        with pytest.raises(UsageError, match="not in 1..60"):
            gps.latlon_to_utm(10.0, 3.0, zone_number=zone)
        with pytest.raises(UsageError, match="not in 1..60"):
            gps.utm_to_latlon(500000.0, 0.0, zone, "N")
    assert gps.latlon_to_utm(10.0, 3.0, zone_number=60)[2] == 60
    assert gps.utm_to_latlon(500000.0, 0.0, 1, "N")[1] == pytest.approx(-177.0)


def test_southern_hemisphere_round_trip_from_the_letter():
    e, n, z, letter = gps.latlon_to_utm(-33.8568, 151.2153)  # Sydney
    assert (z, letter) == (56, "H") and n > 6e6
    lat, lon = gps.utm_to_latlon(e, n, z, letter.lower())    # letters are case-insensitive
    assert (lat, lon) == (pytest.approx(-33.8568, abs=1e-9), pytest.approx(151.2153, abs=1e-9))
    with pytest.raises(UsageError, match="zone_letter or northern"):
        gps.utm_to_latlon(e, n, z)


def test_ecef_round_trip_away_from_the_equator_and_at_the_pole():
    lat = np.array([0.0, 45.0, -63.5, 89.99999, 90.0])
    lon = np.array([10.0, -120.0, 33.0, 5.0, 0.0])
    h = np.array([0.0, 1200.0, -30.0, 10.0, 2.0])
    x, y, z = gps.geodetic_to_ecef(lat, lon, h)
    assert z[4] == pytest.approx(6356752.314245 + 2.0, abs=1e-3)  # polar radius + h
    lat2, lon2, h2 = gps.ecef_to_geodetic(x, y, z)
    assert np.abs(lat2 - lat).max() < 1e-9 and np.abs(h2 - h).max() < 1e-4
    assert np.abs(lon2[:4] - lon[:4]).max() < 1e-9


# --------------------------------------------------------------------------- polar


def test_center_square_takes_the_middle():
    img = np.arange(10 * 6).reshape(10, 6)
    assert np.array_equal(center_square(img), img[2:8, :])
    assert np.array_equal(center_square(img.T), img.T[:, 2:8])
    odd = np.arange(7 * 4 * 3).reshape(7, 4, 3)
    assert np.array_equal(center_square(odd), odd[1:5])


def test_crop_square_transforms_the_centre_crop():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
    got = polar_transform(img, (8, 24), crop_square=True)
    assert np.array_equal(got, polar_transform(img[:, 8:48], (8, 24)))
    with pytest.raises(DataError, match=r"tile\.png: aerial image is 40x56, not square"):
        polar_transform(img, (8, 24), source="tile.png")


def test_polar_sizes_must_be_positive():
    for S, H, W in ((0, 4, 4), (-2, 4, 4), (8, 0, 4), (8, 4, 0)):
        with pytest.raises(UsageError, match="polar sizes must be positive"):
            polar_coords(S, H, W)
    row, col = polar_coords(1, 1, 1)   # the smallest valid geometry
    assert (row.shape, float(row[0, 0]), float(col[0, 0])) == ((1, 1), 0.5, 0.5)
    assert PolarParams(size=(1, 1)).size == (1, 1)
    for bad in ((0, 5), (5, 0), (2.5, 8)):
        with pytest.raises(UsageError, match="not a valid polar size"):
            PolarParams(size=bad)
    with pytest.raises(UsageError, match="^north 'up' is not one of center [|] left$"):
        polar_coords(8, 4, 4, north="up")
    with pytest.raises(UsageError, match="^radius 'full' is not one of safa [|] seed$"):
        polar_coords(8, 4, 4, radius="full")


def test_polar_radius_conventions_on_the_first_and_last_rows():
    S, H, W = 40, 10, 8
    row, col = polar_coords(S, H, W)                         # safa: (S/2)(H-1-i)/H
    assert row[0, 0] == pytest.approx(S / 2 + (S / 2) * (H - 1) / H) and row[-1, 0] == S / 2
    row, _ = polar_coords(S, H, W, radius="seed")            # seed: (S/2)(H-i)/H
    assert row[0, 0] == pytest.approx(S) and row[-1, 0] == pytest.approx(S / 2 + S / 2 / H)
    # north="left" mirrors both axes (a W/2 roll of the default)
    r1, c1 = polar_coords(S, H, W, north="left")
    r0, c0 = polar_coords(S, H, W)
    assert np.allclose(r1, np.roll(r0, W // 2, axis=1))
    assert np.allclose(c1, np.roll(c0, W // 2, axis=1))


def test_polar_numpy_zero_outside_and_grey_levels_kept():
    img = np.full((16, 16), 200.0)
    out = polar_numpy(img, (6, 12))
    assert out.shape == (6, 12)
    assert np.allclose(out, 200.0)           # inside the image: a flat image stays flat
    # the seed radius reaches the border (r = S/2 on row 0): column 0 samples row S, just
    # outside the image, which contributes zero
    out = polar_numpy(img, (6, 12), radius="seed")
    assert out[0, 0] == 0.0 and np.allclose(out[1:], 200.0)


def test_column_heading_conventions():
    assert column_heading(0, 8) == 180.0 and column_heading(4, 8) == 0.0
    assert column_heading(2, 8) == 270.0                    # W/4: west
    assert column_heading(0, 8, north="left") == 0.0
    assert column_heading(2, 8, north="left") == 90.0


def loop_sampler(img: np.ndarray, H: int, W: int, north: str, radius: str) -> np.ndarray:
    """The sampler written out pixel by pixel for any convention: bilinear over the four
    neighbours, each outside the image contributing zero."""
    import math

    S = img.shape[0]
    out = np.zeros((H, W, img.shape[2]))
    sign = 1.0 if north == "center" else -1.0
    for i in range(H):
        r = S / 2 * ((H - 1 - i) if radius == "safa" else (H - i)) / H
        for j in range(W):
            th = 2 * math.pi * j / W
            y, x = S / 2 + sign * r * math.cos(th), S / 2 - sign * r * math.sin(th)
            y0, x0 = math.floor(y), math.floor(x)
            for yy, wy in ((y0, y0 + 1 - y), (y0 + 1, y - y0)):
                for xx, wx in ((x0, x0 + 1 - x), (x0 + 1, x - x0)):
                    if 0 <= yy < S and 0 <= xx < S:
                        out[i, j] += wy * wx * img[yy, xx]
    return out


@pytest.mark.parametrize("north, radius", [("center", "seed"), ("left", "seed"),
                                           ("left", "safa")])
def test_polar_numpy_equals_the_loop_on_noise_up_to_the_border(north, radius):
    # noise, not a smooth image: a sample taken from the neighbouring row or column (a
    # clipped index one off at the border) changes the value
    img = np.random.default_rng(3).integers(0, 256, (16, 16, 3)).astype(np.float64)
    got = polar_numpy(img, (6, 12), north, radius)
    assert np.abs(got - loop_sampler(img, 6, 12, north, radius)).max() < 1e-9
    if radius == "seed":  # rows 0 and S-... reach the border: row 0 samples row/col 0 exactly
        col = 6 if north == "center" else 0        # theta = pi (center) or 0 (left): row 0
        assert np.allclose(got[0, col], img[0, 8])


def test_byte_scale_rules():
    from geobench.geometry.polar import byte_scale

    assert byte_scale(np.zeros((0, 3))).shape == (0, 3)
    v = np.array([[2.0, 4.0], [6.0, 10.0]])
    assert byte_scale(v).tolist() == [[0, 64], [128, 255]]   # (v-2)*255/8 + 0.5, truncated
    assert byte_scale(np.full((2, 2), 7.3)).tolist() == [[0, 0], [0, 0]]
    assert byte_scale(np.array([1, 2], np.uint8)).tolist() == [0, 255]


def test_polar_folder_applies_the_stretch(tmp_path):
    import cv2

    from geobench.geometry.polar import polar_folder

    img = (np.random.default_rng(0).integers(0, 40, (20, 20, 3)) + 100).astype(np.uint8)
    (tmp_path / "src").mkdir()
    cv2.imwrite(str(tmp_path / "src" / "a.png"), img)
    polar_folder(tmp_path / "src", tmp_path / "out", PolarParams(size=(6, 12), stretch="minmax"))
    got = cv2.imread(str(tmp_path / "out" / "a.png"))
    assert np.array_equal(got, polar_transform(img, (6, 12), stretch="minmax"))
    assert got.max() == 255 and got.min() == 0


def test_polar_report_failure_messages(tmp_path):
    from geobench.geometry.polar import PolarReport

    def report(n):
        failed = [(f"/x/{i}.jpg", f"/x/{i}.jpg: corrupt") for i in range(n)]
        return PolarReport(tmp_path, PolarParams(), 3, 1, failed, {}, 0.0)

    report(0).raise_for_failures()
    assert report(2).total == 6
    with pytest.raises(DataError) as one:
        report(1).raise_for_failures()
    assert str(one.value) == ("/x/0.jpg: corrupt; the other images were written, fix or remove "
                              "the failed ones and re-run to finish")
    with pytest.raises(DataError) as three:
        report(3).raise_for_failures()
    assert str(three.value).startswith(f"/x/0.jpg: corrupt (and 2 more, listed in "
                                       f"{tmp_path / 'polar.json'}); the other images")


def test_polar_json_description_of_both_conventions():
    from geobench.geometry.polar import describe

    interp = "bilinear (OpenCV remap, 1/32 px), zero outside the aerial image"
    assert describe(PolarParams()) == {
        "convention": "safa-code", "crop_square": False, "format": "png", "north": "center",
        "radius": "safa", "size": [112, 616], "stretch": "none",
        "formula": "r = (S/2)(H-1-i)/H, theta = 2 pi j / W, row = S/2 + r cos(theta), "
                   "col = S/2 - r sin(theta); S = aerial side in pixels",
        "heading": "heading(j) = 180 + 360 j / W (north at the centre column)",
        "interpolation": interp, "stretch_rule": "none: grey levels as sampled"}
    params = PolarParams(north="left", radius="seed", stretch="minmax", size=(8, 16),
                         format="jpg", crop_square=True)
    assert describe(params) == {
        "convention": "custom", "crop_square": True, "format": "jpg", "north": "left",
        "radius": "seed", "size": [8, 16], "stretch": "minmax",
        "formula": "r = (S/2)(H-i)/H, theta = 2 pi j / W, row = S/2 - r cos(theta), "
                   "col = S/2 + r sin(theta); S = aerial side in pixels",
        "heading": "heading(j) = 360 j / W (north at column 0)",
        "interpolation": interp,
        "stretch_rule": "per image: (v - min) * 255 / (max - min) + 0.5, truncated (SAFA/DSM "
                        "files, scipy.misc.imsave byte scaling)"}
    assert describe(PolarParams(radius="seed"))["convention"] == "custom"
    assert describe(PolarParams(north="left"))["convention"] == "custom"


def test_polar_json_record_resume_and_sources_inside_the_output(tmp_path):
    import json

    import cv2

    from geobench.geometry.polar import polar_files, polar_folder

    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in (("a", (20, 20)), ("b", (20, 30)), ("d", (20, 20))):
        cv2.imwrite(str(src / f"{name}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    (src / "bad.png").write_bytes(b"not a png")
    dst = src / "out"                                   # outputs inside the source folder
    params = PolarParams(size=(4, 8), crop_square=True)
    rep = polar_folder(src, dst, params)
    meta = json.loads((dst / "polar.json").read_text())
    assert (rep.written, rep.skipped, rep.params, rep.input_sizes) == \
        (3, 0, params, {"20x20": 2, "20x30": 1})
    assert 0 <= rep.seconds < 600
    assert meta["schema"] == "geobench.polar/1" and meta["source"] == str(src)
    assert (meta["complete"], meta["count"]) == (False, 4)
    assert meta["input_sizes"] == ["20x20", "20x30"] and meta["parameters"] == params.to_json()
    assert [f["path"] for f in meta["failed"]] == [str(src / "bad.png")]
    assert "error" in meta["failed"][0] and meta["versions"]
    (src / "bad.png").unlink()
    cv2.imwrite(str(src / "c.png"), rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    rep = polar_folder(src, dst, params)                # same parameters: resume
    meta = json.loads((dst / "polar.json").read_text())
    assert (rep.written, rep.skipped, rep.input_sizes) == (1, 3, {"16x16": 1})
    assert (meta["complete"], meta["count"], meta["failed"]) == (True, 4, [])
    assert meta["input_sizes"] == ["16x16", "20x20", "20x30"]   # earlier runs' sizes kept
    (dst / "polar.json").write_text("{not json")        # unreadable record: all stale
    assert polar_folder(src, dst, params).written == 4
    (src / "b.png").unlink()                             # new parameters: only this run's sizes
    other = polar_folder(src, dst, PolarParams(size=(4, 8), crop_square=True, north="left"))
    assert other.written == 3 and json.loads((dst / "polar.json").read_text())[
        "input_sizes"] == ["16x16", "20x20"]
    # the explicit-pairs entry point: no source recorded unless given, failures reported
    (src / "bad.png").write_bytes(b"not a png")
    rep = polar_files([(src / "bad.png", tmp_path / "p" / "bad.png")], tmp_path / "p", params)
    assert len(rep.failed) == 1 and json.loads((tmp_path / "p" / "polar.json").read_text())[
        "source"] == ""


def test_polar_params_normalise_and_name_the_bad_option():
    assert PolarParams(size=(8.0, 16.0)).size == (8, 16)
    assert isinstance(PolarParams(size=(8.0, 16.0)).size[0], int)
    for field, value, message in (("radius", "full", "--radius 'full' is not one of safa | seed"),
                                  ("format", "gif", "--format 'gif' is not one of png | jpg"),
                                  ("north", "up", "--north 'up' is not one of center | left")):
        with pytest.raises(UsageError) as err:
            PolarParams(**{field: value})
        assert str(err.value) == message


def test_polar_transform_messages_and_zero_border():
    with pytest.raises(DataError, match=r"^aerial image is 4x6, not square; the polar"):
        polar_transform(np.zeros((4, 6), np.uint8), (4, 8))
    with pytest.raises(UsageError, match=r"^--stretch 'gamma' is not one of none [|] minmax$"):
        polar_transform(np.zeros((4, 4), np.uint8), (4, 8), stretch="gamma")
    # the seed radius samples the aerial border itself on row 0: column 0 looks at row S,
    # just outside the image, which is black (OpenCV's constant border, value 0)
    out = polar_transform(np.full((16, 16), 200, np.uint8), (6, 12), radius="seed")
    assert out[0, 0] == 0 and out[3, 0] == 200


def test_polar_record_is_written_before_a_run_with_new_parameters(tmp_path, monkeypatch):
    import json

    import cv2

    import geobench.geometry.imagerun as imagerun
    from geobench.geometry.polar import polar_folder

    (tmp_path / "src").mkdir()
    cv2.imwrite(str(tmp_path / "src" / "a.png"), np.full((12, 12, 3), 90, np.uint8))
    dst = tmp_path / "out"
    polar_folder(tmp_path / "src", dst, PolarParams(size=(4, 8)))
    new = PolarParams(size=(4, 8), north="left")
    real = imagerun.run_jobs

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(imagerun, "run_jobs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        polar_folder(tmp_path / "src", dst, new)
    meta = json.loads((dst / "polar.json").read_text())
    # the old outputs must not pass for the new parameters' ones
    assert meta["parameters"] == new.to_json() and meta["complete"] is False
    assert "input_sizes" not in meta
    monkeypatch.setattr(imagerun, "run_jobs", real)
    rep = polar_folder(tmp_path / "src", dst, new)       # resumes: same parameters now
    assert rep.written == 1 and json.loads((dst / "polar.json").read_text())[
        "input_sizes"] == ["12x12"]
