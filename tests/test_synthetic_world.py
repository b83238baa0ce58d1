"""Geometric faithfulness of the synthetic world: ray caster, aerial camera, polar agreement."""
from __future__ import annotations

import numpy as np
import pytest

from geobench.datasets.synthetic.difficulty import Difficulty, limit_view, resolve_difficulty
from geobench.datasets.synthetic.render import LABELS, cast, pano_rays, render_aerial
from geobench.datasets.synthetic.town import Plan, city_style, plan_district
from geobench.datasets.synthetic.world import build_district
from geobench.errors import UsageError
from geobench.geometry.polar import polar_coords

CLEAN = Difficulty(vehicles=0.0, occluders=0.0, noise=0.0)


def _one_tower_world(bearings, dist=40.0, size=300.0, res=0.25):
    """Flat grass, no roads or trees, one tall 6x6 m tower per bearing around the centre."""
    rng = np.random.default_rng(0)
    style = city_style("Test", rng, 1.0)
    c = size / 2
    boxes = []
    for b in bearings:
        x, y = c + dist * np.sin(np.radians(b)), c + dist * np.cos(np.radians(b))
        boxes.append([x - 3, y - 3, x + 3, y + 3, 45.0])
    n = len(boxes)
    plan = Plan(size=(size, size), roads_x=np.array([-1e4]), roads_y=np.array([-1e4]),
                lots=np.zeros((0, 4)), lot_kind=np.zeros(0, np.int8), boxes=np.array(boxes),
                box_lot=np.zeros(n, np.int64), wall=np.full((n, 3), 200.0),
                roof=np.tile([[255.0, 0, 0]], (n, 1)), trees=np.zeros((0, 4)),
                tree_rgb=np.zeros((0, 3)))
    return plan, build_district(style, plan, res, CLEAN, rng), c


def _circ_mean_deg(cols: np.ndarray, W: int) -> float:
    ang = cols / W * 2 * np.pi
    return float(np.degrees(np.arctan2(np.sin(ang).mean(), np.cos(ang).mean())) % 360)


def _circ_diff(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


@pytest.mark.parametrize("bearing", [0.0, 37.0, 90.0, 160.0, 233.0, 301.0])
def test_tower_bearing_matches_pano_column_aerial_and_polar(bearing):
    plan, world, c = _one_tower_world([bearing])
    H, W, S = 112, 616, 256
    az, tan_el = pano_rays(H, W, 0.59)
    rgb, labels = cast(world.ground, c, c, az, tan_el, np.random.default_rng(1))
    horizon = int(0.59 * H)
    above = labels[: horizon - 3] == LABELS["building"]
    cols = np.flatnonzero(above.any(axis=0))
    assert cols.size > 0
    # north at the centre column, clockwise: column = W/2 + bearing/360*W (mod W)
    expected_col = (W / 2 + bearing / 360 * W) % W
    assert _circ_diff(_circ_mean_deg(cols, W), expected_col / W * 360) < 1.5
    # angular width of a 6 m tower at 40 m is about 8.6 degrees
    assert 10 <= cols.size <= 20
    # aerial: north-up, camera at (S/2, S/2); the red roof lies at that bearing
    extent = 120.0
    img = render_aerial(world.aerial_rgb, world.ground.res, plan.size, c, c, extent, S)
    roof = (img[..., 0] > 150) & (img[..., 1] < 90) & (img[..., 2] < 90)
    ii, jj = np.nonzero(roof)
    assert ii.size > 50
    aerial_bearing = np.degrees(np.arctan2(jj.mean() - S / 2, S / 2 - ii.mean())) % 360
    assert _circ_diff(aerial_bearing, bearing) < 1.5
    assert abs(np.hypot(jj.mean() - S / 2, ii.mean() - S / 2) * extent / S - 40.0) < 0.6
    # SAFA polar transform of the aerial: the roof appears in the panorama's columns
    prow, pcol = polar_coords(S, H, W)
    pr = np.clip(np.round(prow).astype(int), 0, S - 1)
    pc = np.clip(np.round(pcol).astype(int), 0, S - 1)
    polar_roof = roof[pr, pc].any(axis=0)
    pcols = np.flatnonzero(polar_roof)
    assert _circ_diff(_circ_mean_deg(pcols, W), _circ_mean_deg(cols, W)) < 1.5
    overlap = np.intersect1d(pcols, cols).size / max(len(cols), 1)
    assert overlap > 0.6


def test_several_towers_each_at_its_column():
    bearings = [20.0, 110.0, 200.0, 290.0]
    plan, world, c = _one_tower_world(bearings)
    W = 616
    az, tan_el = pano_rays(112, W, 0.59)
    _, labels = cast(world.ground, c, c, az, tan_el, np.random.default_rng(1))
    building = (labels[:50] == LABELS["building"]).any(axis=0)
    for b in bearings:
        col = int(round(W / 2 + b / 360 * W)) % W
        assert building[col], b
        opposite = int(round(W / 2 + (b + 45) / 360 * W)) % W
        assert not building[opposite], b


def _first_box_distance(boxes, x, y, az):
    """Analytic slab test: distance along each azimuth to the first box (inf if none)."""
    dx, dy = np.sin(az)[:, None], np.cos(az)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        tx0, tx1 = (boxes[:, 0] - x) / dx, (boxes[:, 2] - x) / dx
        ty0, ty1 = (boxes[:, 1] - y) / dy, (boxes[:, 3] - y) / dy
    tmin = np.maximum(np.minimum(tx0, tx1), np.minimum(ty0, ty1))
    tmax = np.minimum(np.maximum(tx0, tx1), np.maximum(ty0, ty1))
    ok = (tmax >= np.maximum(tmin, 0)) & np.isfinite(tmin)
    return np.where(ok, np.maximum(tmin, 0), np.inf).min(axis=1)


def test_generated_town_walls_agree_with_analytic_boxes():
    rng = np.random.default_rng(3)
    style = city_style("Check", rng, 0.8)
    plan = plan_district(style, (400.0, 400.0), rng)
    world = build_district(style, plan, 0.35, CLEAN, rng)
    H, W = 112, 616
    az, tan_el = pano_rays(H, W, 0.59)
    el = np.degrees(np.arctan(tan_el[:, 0]))
    row = int(np.argmin(np.abs(el + 0.6)))   # just below the horizon: ground hit ~190 m out
    reach = 2.0 / np.tan(np.radians(-el[row]))
    agree, total = 0, 0
    for k in range(4):
        x = float(plan.roads_x[1 + k % max(1, len(plan.roads_x) - 2)])
        y = 120.0 + 40 * k
        _, labels = cast(world.ground, x, y, az, tan_el, rng)
        d = _first_box_distance(plan.boxes, x, y, az)
        certain = np.abs(d - reach) > 15      # skip walls right at the ground-hit distance
        trunk_free = labels[row] != LABELS["tree"]
        mask = certain & trunk_free
        agree += int(((labels[row] == LABELS["building"]) == (d < reach))[mask].sum())
        total += int(mask.sum())
    assert total > 1000
    assert agree / total > 0.95


def test_limit_view_rolls_to_heading_and_crops():
    W = 360
    pano = np.tile(np.arange(W, dtype=np.int32)[None, :], (4, 1))
    same, h = limit_view(pano, 0.0, 360.0)
    assert np.array_equal(same, pano) and h == 0.0
    rolled, h = limit_view(pano, 90.0, 360.0)
    # centre column now shows what faced east (original column W/2 + W/4)
    assert rolled[0, W // 2] == W // 2 + W // 4 and h == 90.0
    crop, h = limit_view(pano, -45.0, 90.0)
    assert crop.shape[1] == 90 and crop[0, 45] == W // 2 - W // 8


def test_presets_and_overrides():
    easy, hard = resolve_difficulty("easy"), resolve_difficulty("hard")
    assert easy.lighting < hard.lighting and easy.test_pairs < hard.test_pairs
    assert resolve_difficulty("standard", {"noise": 0.0}).noise == 0.0
    with pytest.raises(UsageError, match="unknown difficulty knob"):
        resolve_difficulty("standard", {"nosie": 1})
    with pytest.raises(UsageError, match="unknown synthetic preset"):
        resolve_difficulty("medium")
    with pytest.raises(UsageError, match="lighting"):
        Difficulty(lighting=2.0)
