from __future__ import annotations

import json
import math
import os

import cv2
import numpy as np
import pytest

from geobench.errors import DataError, UsageError
from geobench.geometry.polar import (
    PolarParams,
    column_heading,
    polar_folder,
    polar_maps,
    polar_numpy,
    polar_transform,
)


def smooth_image(S: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.uniform(0, 255, (S, S, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 1.5), 0, 255).astype(np.uint8)


def formula_by_loops(img: np.ndarray, H: int, W: int) -> np.ndarray:
    """datasets.md §6.1 written out pixel by pixel (SAFA code convention)."""
    S = img.shape[0]
    out = np.zeros((H, W, img.shape[2]))
    for i in range(H):
        for j in range(W):
            r = S / 2 * (H - 1 - i) / H
            th = 2 * math.pi * j / W
            y, x = S / 2 + r * math.cos(th), S / 2 - r * math.sin(th)
            y0, x0 = math.floor(y), math.floor(x)
            for yy, wy in ((y0, y0 + 1 - y), (y0 + 1, y - y0)):
                for xx, wx in ((x0, x0 + 1 - x), (x0 + 1, x - x0)):
                    if 0 <= yy < S and 0 <= xx < S:
                        out[i, j] += wy * wx * img[yy, xx]
    return out


def test_default_matches_the_safa_formula():
    img = smooth_image(40)
    ref = formula_by_loops(img, 10, 36)
    got = polar_transform(img, (10, 36)).astype(float)
    assert np.abs(got - ref).mean() < 0.5
    assert np.abs(got - ref).max() < 3
    assert np.abs(polar_numpy(img, (10, 36)) - ref).max() < 1e-9


@pytest.mark.parametrize("north, radius", [("center", "safa"), ("left", "safa"),
                                           ("center", "seed"), ("left", "seed")])
def test_opencv_agrees_with_float64_sampler(north, radius):
    img = smooth_image(64, seed=1)
    fast = polar_transform(img, (16, 48), north, radius).astype(float)
    slow = polar_numpy(img, (16, 48), north, radius)
    assert np.abs(fast - slow).mean() < 0.5     # well under one grey level


def marker_aerial(S: int = 100) -> np.ndarray:
    """North-up aerial: red north, green east, blue south, white west."""
    img = np.zeros((S, S, 3), np.uint8)
    c, d = S // 2, int(S * 0.35)
    for (row, col), colour in (((c - d, c), (0, 0, 255)), ((c, c + d), (0, 255, 0)),
                               ((c + d, c), (255, 0, 0)), ((c, c - d), (255, 255, 255))):
        cv2.circle(img, (col, row), 4, colour, -1)
    return img


def marker_columns(polar: np.ndarray) -> dict[str, float]:
    prof = polar.astype(float).sum(axis=0)  # (W, 3) BGR
    b, g, r = prof[:, 0], prof[:, 1], prof[:, 2]
    return {"north": np.argmax(r - g - b), "east": np.argmax(g - r - b),
            "south": np.argmax(b - r - g), "west": np.argmax(np.minimum(np.minimum(b, g), r))}


@pytest.mark.parametrize("north, expected", [
    ("center", {"south": 0, "west": 16, "north": 32, "east": 48}),
    ("left", {"north": 0, "east": 16, "south": 32, "west": 48}),
])
def test_compass_markers_land_in_the_right_columns(north, expected):
    polar = polar_transform(marker_aerial(), (32, 64), north=north)
    found = marker_columns(polar)
    for name, col in expected.items():
        assert min(abs(found[name] - col), 64 - abs(found[name] - col)) <= 1, (name, found)
        assert column_heading(col, 64, north) == {"north": 0, "east": 90, "south": 180,
                                                  "west": 270}[name]


def test_seed_convention_is_a_half_turn_of_the_default():
    img = smooth_image(60, seed=2)
    a = polar_transform(img, (12, 40), north="center")
    b = polar_transform(img, (12, 40), north="left")
    assert np.abs(np.roll(b, 20, axis=1).astype(int) - a).max() <= 1


def test_rows_run_from_border_to_centre():
    S, H, W = 100, 20, 40
    row, col = polar_maps(S, H, W)[1], polar_maps(S, H, W)[0]
    r = np.hypot(row - S / 2, col - S / 2)
    assert r[-1].max() < 1e-4                               # bottom row = centre
    assert r[0].min() == pytest.approx(S / 2 * (H - 1) / H, abs=1e-3)
    seed_row, seed_col = polar_maps(S, H, W, radius="seed")[1], polar_maps(S, H, W, radius="seed")[0]
    assert np.hypot(seed_row - S / 2, seed_col - S / 2)[0].min() == pytest.approx(S / 2, abs=1e-3)
    assert polar_maps(S, H, W) is polar_maps(S, H, W)       # cached per size


def test_polar_columns_agree_with_a_north_centred_panorama():
    """A world whose colour depends only on compass bearing: the polar image of its
    north-up aerial view must equal the panorama column by column."""
    S, H, W = 120, 24, 72

    def colour(bearing_deg):
        t = np.radians(bearing_deg)
        return np.stack([127 + 120 * np.cos(t), 127 + 120 * np.sin(t),
                         127 + 120 * np.cos(2 * t)], axis=-1)

    rows, cols = np.mgrid[0:S, 0:S].astype(float)
    aerial = colour(np.degrees(np.arctan2(cols - S / 2, S / 2 - rows)))  # east, north
    pano_cols = colour(360.0 * np.arange(W) / W - 180.0)                  # CVUSA convention
    polar = polar_transform(aerial.astype(np.float32), (H, W)).astype(float)
    diff = np.abs(polar[: H - 6] - pano_cols[None]).mean()
    assert diff < 2.0


def write_jpg(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def test_folder_mirrors_paths_and_records_parameters(tmp_path):
    src, dst = tmp_path / "bingmap", tmp_path / "polarmap"
    for name in ("19/a.jpg", "19/b.jpg", "x/c.png"):
        write_jpg(src / name, smooth_image(48))
    params = PolarParams(size=(8, 24))
    report = polar_folder(src, dst, params)
    assert (report.written, report.skipped, report.failed) == (3, 0, [])
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.png")) == \
        ["19/a.png", "19/b.png", "x/c.png"]
    assert cv2.imread(str(dst / "19/a.png")).shape == (8, 24, 3)
    meta = json.loads((dst / "polar.json").read_text())
    assert meta["parameters"]["size"] == [8, 24] and meta["complete"] is True
    assert meta["description"]["convention"] == "safa-code"
    assert meta["input_sizes"] == ["48x48"]
    assert not [p for p in dst.rglob("*") if ".tmp" in p.name]
    # resumable: nothing to do; a touched source is redone
    again = polar_folder(src, dst, params)
    assert (again.written, again.skipped) == (0, 3)
    future = os.stat(dst / "19/a.png").st_mtime + 10
    os.utime(src / "19/b.jpg", (future, future))
    assert polar_folder(src, dst, params).written == 1
    # changed parameters make every output stale
    changed = polar_folder(src, dst, PolarParams(size=(8, 24), north="left"))
    assert changed.written == 3
    assert json.loads((dst / "polar.json").read_text())["parameters"]["north"] == "left"


def test_list_file_and_jpg_format_and_workers(tmp_path):
    root = tmp_path / "raw"
    for k in range(5):
        write_jpg(root / f"sat/{k}.jpg", smooth_image(40, seed=k))
    listing = root / "list.txt"
    listing.write_text("# aerials\n" + "".join(f"sat/{k}.jpg\n" for k in range(5)) + "\n")
    one = polar_folder(listing, tmp_path / "one", PolarParams(size=(8, 32), format="jpg"))
    two = polar_folder(listing, tmp_path / "two", PolarParams(size=(8, 32), format="jpg"),
                       workers=2)
    assert one.written == two.written == 5
    for k in range(5):
        a = (tmp_path / "one" / f"sat/{k}.jpg").read_bytes()
        assert a == (tmp_path / "two" / f"sat/{k}.jpg").read_bytes()


def test_corrupt_and_non_square_images_are_reported_by_path(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_jpg(src / "good.jpg", smooth_image(32))
    write_jpg(src / "wide.jpg", np.zeros((20, 32, 3), np.uint8))
    (src / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    report = polar_folder(src, dst, PolarParams(size=(8, 16)))
    assert report.written == 1
    failed = dict(report.failed)
    assert "corrupt" in failed[str(src / "bad.jpg")]
    assert "not square" in failed[str(src / "wide.jpg")] and "--crop-square" in \
        failed[str(src / "wide.jpg")]
    with pytest.raises(DataError, match="bad.jpg.*and 1 more"):
        report.raise_for_failures()
    assert not (dst / "bad.png").exists()
    assert json.loads((dst / "polar.json").read_text())["complete"] is False
    with pytest.raises(DataError, match=r"bad\.jpg.*--strict"):
        polar_folder(src, tmp_path / "strict", PolarParams(size=(8, 16)), strict=True)
    cropped = polar_folder(src, tmp_path / "sq", PolarParams(size=(8, 16), crop_square=True))
    assert cropped.written == 2 and len(cropped.failed) == 1


def test_input_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        polar_folder(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        polar_folder(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(UsageError, match="--north"):
        PolarParams(north="up")
    with pytest.raises(UsageError, match="--size"):
        PolarParams(size=(0, 10))
    with pytest.raises(DataError, match="not square"):
        polar_transform(np.zeros((10, 12, 3), np.uint8), (4, 8))
    lst = tmp_path / "l.txt"
    lst.write_text("missing.jpg\n")
    report = polar_folder(lst, tmp_path / "out2", PolarParams(size=(4, 8)))
    assert "cannot read" in report.failed[0][1]


def test_cli_polar_success_and_errors(tmp_path):
    from typer.testing import CliRunner

    from geobench.cli import app

    src = tmp_path / "src"
    write_jpg(src / "a.jpg", smooth_image(32))
    runner = CliRunner()
    res = runner.invoke(app, ["polar", str(src), str(tmp_path / "out"), "--size", "8x16", "-q"])
    assert res.exit_code == 0, res.output
    assert "written" in res.stdout and (tmp_path / "out/a.png").is_file()
    res = runner.invoke(app, ["polar", str(tmp_path / "nope"), str(tmp_path / "o2")])
    assert res.exit_code != 0 and "nope: not found" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = runner.invoke(app, ["polar", str(src), str(tmp_path / "o3"), "--size", "8by16"])
    assert res.exit_code != 0 and "HEIGHTxWIDTH" in res.stderr
    write_jpg(src / "wide.jpg", np.zeros((10, 20, 3), np.uint8))
    res = runner.invoke(app, ["polar", str(src), str(tmp_path / "o4"), "--size", "8x16", "-q"])
    assert res.exit_code != 0 and "wide.jpg" in res.stderr and "--crop-square" in res.stderr
    assert (tmp_path / "o4/a.png").is_file() and not (tmp_path / "o4/wide.png").exists()


def test_polar_of_synthetic_aerials_lines_up_with_synthetic_panoramas(tmp_path):
    """The synthetic world renders north-up aerials and north-centred panoramas of the
    same places; the azimuthal profile of the default polar image must match the
    panorama's without a shift, and the seed convention's must be half a turn off."""
    synthetic = pytest.importorskip("geobench.datasets.synthetic")
    from geobench.progress import set_quiet

    set_quiet(True)
    raw = synthetic.generate(synthetic.SyntheticOptions(
        out=tmp_path / "raw", pairs=4, test_pairs=4, cities=1, preset="easy", layout="cvusa"))

    def shift_curve(a, b):
        a, b = a - a.mean(0), b - b.mean(0)
        c = np.array([np.sum(a * np.roll(b, s, axis=0)) for s in range(len(a))])
        return c / (np.abs(c).max() + 1e-9)

    # one place's profile can be ambiguous (a straight street looks alike half a turn
    # round), so the correlation curves of all pairs are summed before the best shift
    found = {"center": 0.0, "left": 0.0}
    pairs = sorted((raw / "bingmap/19").glob("*.jpg"))
    for aerial_path in pairs:
        pano = cv2.imread(str(raw / "streetview/panos" / aerial_path.name)).astype(float)
        aerial = cv2.imread(str(aerial_path))
        H, W = pano.shape[:2]
        for north in found:
            polar = polar_transform(aerial, (H, W), north=north).astype(float)
            found[north] = found[north] + shift_curve(polar[H // 2:].mean(0),
                                                      pano[H // 2:].mean(0))
    assert len(pairs) >= 6
    turns = {k: int(np.argmax(v)) / W for k, v in found.items()}
    assert min(turns["center"], 1 - turns["center"]) < 1 / 36   # within 10 degrees
    assert abs(turns["left"] - 0.5) < 1 / 36


def scipy_bytescale(data: np.ndarray) -> np.ndarray:
    """scipy.misc.imsave's float -> uint8 step (bytescale with the image's min and max),
    written out as the definition SAFA's and DSM's published polar files went through."""
    cmin, cmax = data.min(), data.max()
    cscale = (cmax - cmin) or 1
    return (((data - cmin) * (255.0 / cscale)).clip(0, 255) + 0.5).astype(np.uint8)


def test_minmax_stretch_reproduces_safa_files_on_low_contrast_tiles(tmp_path):
    base = smooth_image(60, seed=4).astype(np.float32)
    low = (100 + base * 0.12).astype(np.uint8)  # a hazy tile: ~30 grey levels of range
    safa = scipy_bytescale(formula_by_loops(low, 12, 40))
    plain = polar_transform(low, (12, 40))
    stretched = polar_transform(low, (12, 40), stretch="minmax")
    assert stretched.dtype == np.uint8 and stretched.min() == 0 and stretched.max() == 255
    assert np.abs(stretched.astype(int) - safa).max() <= 2
    assert np.abs(stretched.astype(int) - safa).mean() < 0.5
    assert np.abs(plain.astype(int) - safa).max() > 70  # what the unstretched files differ by
    flat = polar_transform(np.full((20, 20, 3), 90, np.uint8), (4, 8), stretch="minmax")
    assert not flat.any()  # max = min: scale 1, everything at 0 (as bytescale does)
    with pytest.raises(UsageError, match="--stretch 'gamma'"):
        PolarParams(stretch="gamma")
    # recorded in polar.json; the default keeps older folders' parameters unchanged
    write_jpg(tmp_path / "src" / "a.jpg", smooth_image(32))
    polar_folder(tmp_path / "src", tmp_path / "out", PolarParams(size=(8, 16), stretch="minmax"))
    meta = json.loads((tmp_path / "out" / "polar.json").read_text())
    assert meta["parameters"]["stretch"] == "minmax" and "max - min" in meta["description"]["stretch_rule"]
    assert "stretch" not in PolarParams().to_json()
