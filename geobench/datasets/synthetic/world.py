"""Rasterised districts and their two "captures" (ground-time and aerial-time).

A district plan becomes a heightfield with material and object rasters (north up,
row 0 = northern edge, cell (r, c) centred at x=(c+0.5)res, y=sy-(r+0.5)res). The ground
capture keeps what ray casting needs; the aerial capture is the same town seen at
another time (other sun, season, paint, buildings and parked cars), kept only as the
top-down colour raster an orthographic nadir camera sees.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geobench.datasets.synthetic.difficulty import Difficulty
from geobench.datasets.synthetic.town import CityStyle, Plan, buildings, roof_colours, wall_colours

GRASS, ROAD, SIDEWALK, MARKING, PLAZA, CANOPY, TRUNK, BUILDING, VEHICLE = range(9)
GROUND = (GRASS, ROAD, SIDEWALK, MARKING, PLAZA)
CANOPY_BOTTOM = 2.2   # metres; at or above the camera, so canopies never hide the ground
VEHICLE_H = 1.5


@dataclass
class Sun:
    az: float   # radians clockwise from north
    el: float   # radians above the horizon

    def vector(self) -> np.ndarray:
        """Unit vector towards the sun in (east, north, up)."""
        return np.array([np.sin(self.az) * np.cos(self.el), np.cos(self.az) * np.cos(self.el),
                         np.sin(self.el)])


@dataclass
class GroundCapture:
    """What the panorama ray caster reads."""

    res: float
    size: tuple[float, float]
    shape: tuple[int, int]   # raster rows, columns
    rel: np.ndarray          # complex64 (cells,), tiled: real = top minus camera height,
                             # imag = the same for rays below the horizon (crowns removed,
                             # trunks at camera height); one 8-byte gather per ray sample
    mat: np.ndarray          # uint8 (cells,), tiled: top material
    obj: np.ndarray          # int32 (cells,), tiled: object id (0: none) into colour tables
    gmat: np.ndarray         # uint8 (nr, nc) ground material (also under crowns, buildings)
    ground_rgb: np.ndarray   # uint32 (nr*nc,): RGBA bytes of the ground, with cast shadows
    wall: np.ndarray         # float32 (n_obj, 3): wall / canopy / car-body colour
    roof: np.ndarray         # float32 (n_obj, 3)
    sun: Sun
    window: tuple[float, float]
    z0: float


@dataclass
class District:
    style: CityStyle
    plan: Plan
    ground: GroundCapture
    aerial_rgb: np.ndarray | None   # uint8 (nr, nc, 3), the town at the later time from above
    aerial_sun: Sun
    later: GroundCapture | None = None  # the later town seen from the street (VG queries)


@dataclass
class Epoch:
    """The town at one time: what stands, its colours, the parked cars and the sun."""

    boxes: np.ndarray        # (B, 5) buildings
    wall: np.ndarray         # (B, 3)
    roof: np.ndarray         # (B, 3)
    tree_rgb: np.ndarray     # (T, 3)
    grass: np.ndarray        # (3,)
    cars: np.ndarray         # (C, 5)
    car_rgb: np.ndarray      # (C, 3)
    sun: Sun


def value_noise(shape: tuple[int, int], rng: np.random.Generator, scales=(64, 16, 4),
                amp: float = 0.12) -> np.ndarray:
    """Smooth multiplicative texture around 1 (sum of upsampled random grids)."""
    import cv2

    out = np.ones(shape, dtype=np.float32)
    for k, s in enumerate(scales):
        small = rng.random((max(2, shape[0] // s + 2), max(2, shape[1] // s + 2)), dtype=np.float32)
        big = cv2.resize(small, (shape[1] + s, shape[0] + s), interpolation=cv2.INTER_LINEAR)
        out += (big[: shape[0], : shape[1]] - 0.5) * (2 * amp / (k + 1))
    return out


TILE = 8  # rays read 8x8-cell tiles: neighbouring samples share cache lines in any direction


def tiled(a: np.ndarray) -> np.ndarray:
    """Row-major (nr, nc, ...) -> flat tile-major; see `tile_index`."""
    nr, nc = a.shape[:2]
    pr, pc = -nr % TILE, -nc % TILE
    a = np.pad(a, ((0, pr), (0, pc)) + ((0, 0),) * (a.ndim - 2), mode="edge")
    t = a.reshape((a.shape[0] // TILE, TILE, a.shape[1] // TILE, TILE) + a.shape[2:])
    t = t.swapaxes(1, 2)
    return np.ascontiguousarray(t).reshape((-1,) + a.shape[2:])


def tile_index(row: np.ndarray, col: np.ndarray, nc: int) -> np.ndarray:
    """Flat index of cells (row, col) >= 0 in a `tiled` raster (shifts: TILE is 8)."""
    ntc = -(-nc // TILE)
    out = row >> 3
    out *= ntc
    out += col >> 3
    out <<= 6
    out |= (row & 7) << 3
    out |= col & 7
    return out


def untile(f: np.ndarray, nc: int) -> tuple[np.ndarray, np.ndarray]:
    ntc = -(-nc // TILE)
    tile, within = f // (TILE * TILE), f % (TILE * TILE)
    return (tile // ntc) * TILE + within // TILE, (tile % ntc) * TILE + within % TILE


class _Grid:
    def __init__(self, res: float, size: tuple[float, float]) -> None:
        self.res, self.size = res, size
        self.shape = (int(np.ceil(size[1] / res)), int(np.ceil(size[0] / res)))

    def rect(self, x0, y0, x1, y1) -> tuple[slice, slice]:
        r, sy = self.res, self.size[1]
        c0, c1 = int(round(x0 / r)), int(round(x1 / r))
        r0, r1 = int(round((sy - y1) / r)), int(round((sy - y0) / r))
        nr, nc = self.shape
        return slice(max(r0, 0), min(r1, nr)), slice(max(c0, 0), min(c1, nc))


def _ground_materials(plan: Plan, style: CityStyle, grid: _Grid) -> np.ndarray:
    gmat = np.full(grid.shape, GRASS, np.uint8)
    sx, sy = plan.size
    for lot, kind in zip(plan.lots, plan.lot_kind, strict=True):
        if kind == 1:
            gmat[grid.rect(*lot)] = PLAZA
    half, walk = style.road_width / 2, style.sidewalk
    for c in plan.roads_x:
        gmat[grid.rect(c - half - walk, -1e3, c + half + walk, sy + 1e3)] = SIDEWALK
    for c in plan.roads_y:
        gmat[grid.rect(-1e3, c - half - walk, sx + 1e3, c + half + walk)] = SIDEWALK
    for c in plan.roads_x:
        gmat[grid.rect(c - half, -1e3, c + half, sy + 1e3)] = ROAD
    for c in plan.roads_y:
        gmat[grid.rect(-1e3, c - half, sx + 1e3, c + half)] = ROAD
    # dashed centre lines, interrupted at crossings
    dash = max(grid.res, 0.3)
    for axis, lines, cross in ((0, plan.roads_x, plan.roads_y), (1, plan.roads_y, plan.roads_x)):
        for c in lines:
            t = 0.0
            length = sy if axis == 0 else sx
            while t < length:
                if np.all(np.abs(cross - (t + 1.5)) > half + walk):
                    box = (c - dash / 2, t, c + dash / 2, t + 3) if axis == 0 else \
                        (t, c - dash / 2, t + 3, c + dash / 2)
                    gmat[grid.rect(*box)] = MARKING
                t += 6.0
    return gmat


def _stamp_boxes(boxes, ids, grid, height, mat, obj, kind) -> None:
    for box, oid in zip(boxes, ids, strict=True):
        sl = grid.rect(*box[:4])
        height[sl], mat[sl], obj[sl] = box[4], kind, oid


def _stamp_trees(trees, first_id, grid, height, mat, obj) -> None:
    res, sy = grid.res, grid.size[1]
    nr, nc = grid.shape
    for k, (x, y, rad, top) in enumerate(trees):
        c0, c1 = max(int((x - rad) / res), 0), min(int((x + rad) / res) + 1, nc)
        r0, r1 = max(int((sy - y - rad) / res), 0), min(int((sy - y + rad) / res) + 1, nr)
        if c1 <= c0 or r1 <= r0:
            continue
        cx = (np.arange(c0, c1) + 0.5) * res - x
        cy = sy - (np.arange(r0, r1) + 0.5) * res - y
        d2 = (cx[None, :] ** 2 + cy[:, None] ** 2) / rad**2
        win = (slice(r0, r1), slice(c0, c1))
        free = (d2 <= 1.0) & (mat[win] != BUILDING)
        dome = CANOPY_BOTTOM + (top - CANOPY_BOTTOM) * np.sqrt(np.clip(1 - d2, 0, 1))
        height[win] = np.where(free, np.maximum(height[win], dome), height[win])
        mat[win] = np.where(free, CANOPY, mat[win])
        obj[win] = np.where(free, first_id + k, obj[win])
        trunk = free & (d2 * rad**2 <= max(0.35, res * 0.75) ** 2)
        mat[win] = np.where(trunk, TRUNK, mat[win])


def vehicles(plan: Plan, style: CityStyle, density: float, rng: np.random.Generator):
    """Parked cars along the kerbs: (N, 5) boxes and (N, 3) colours."""
    boxes, colours = [], []
    if density <= 0:
        return np.zeros((0, 5)), np.zeros((0, 3))
    half = style.road_width / 2
    sx, sy = plan.size
    for axis, lines, cross, length in ((0, plan.roads_x, plan.roads_y, sy),
                                       (1, plan.roads_y, plan.roads_x, sx)):
        for c in lines:
            for side in (-1, 1):
                n = rng.poisson(density * length / 10)
                for t in rng.uniform(0, length, n):
                    if np.any(np.abs(cross - t) < half + style.sidewalk + 4):
                        continue
                    lat = c + side * (half - 1.2)
                    b = (lat - 0.9, t - 2.2, lat + 0.9, t + 2.2) if axis == 0 else \
                        (t - 2.2, lat - 0.9, t + 2.2, lat + 0.9)
                    boxes.append([*b, VEHICLE_H])
                    colours.append(rng.integers(25, 235, 3) if rng.random() < 0.6
                                   else np.full(3, rng.integers(30, 230)))
    return np.array(boxes, float).reshape(-1, 5), np.array(colours, float).reshape(-1, 3)


def _shadow_mask(casters: np.ndarray, trees: np.ndarray, sun: Sun, grid: _Grid) -> np.ndarray:
    """Cells shadowed by boxes and tree crowns under `sun` (boxes swept along the rays)."""
    import cv2

    mask = np.zeros(grid.shape, np.uint8)
    res, sy = grid.res, grid.size[1]
    away = np.array([-np.sin(sun.az), np.cos(sun.az)]) / np.tan(sun.el) / res  # (col, row)/metre
    for x0, y0, x1, y1, h in casters:
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        pix = np.stack([corners[:, 0] / res, (sy - corners[:, 1]) / res], 1)
        pts = np.vstack([pix, pix + away * h]).astype(np.float32)
        hull = cv2.convexHull(pts).round().astype(np.int32)
        cv2.fillConvexPoly(mask, hull, 1)
    for x, y, rad, top in trees:
        centre = np.array([x / res, (sy - y) / res]) + away * (top * 0.75)
        cv2.circle(mask, tuple(int(v) for v in centre.round()), int(round(rad / res)), 1, -1)
    return mask


def _season(rgb: np.ndarray, target: np.ndarray, amount: float) -> np.ndarray:
    return rgb * (1 - amount) + target * amount


def _ground_lut(style: CityStyle, grass: np.ndarray) -> np.ndarray:
    return np.array([grass, style.asphalt, style.sidewalk_rgb, (225, 220, 200),
                     np.array(style.asphalt) * 1.25], np.float32)


def _shade(detail: np.ndarray, shadow: np.ndarray, sun: Sun) -> np.ndarray:
    """Per-cell brightness: texture x sun height x 0.55 in cast shadows."""
    light = np.float32(0.55 + 0.45 * np.sin(sun.el) / np.sin(np.radians(60)))
    out = np.where(shadow > 0, np.float32(0.55) * light, light)
    out *= detail
    return out


def _paint(gmat: np.ndarray, lut: np.ndarray, factor: np.ndarray, obj: np.ndarray | None = None,
           top: np.ndarray | None = None, channels: int = 3) -> np.ndarray:
    """uint8 colours lut[gmat] (top[obj] where obj > 0) times factor, in row blocks that
    stay in cache (full-resolution districts hold over ten million cells)."""
    nr, nc = gmat.shape
    out = np.zeros((nr, nc, channels), np.uint8)
    for r0 in range(0, nr, 64):
        rows = slice(r0, r0 + 64)
        c = lut[gmat[rows]]
        if obj is not None:
            o = obj[rows]
            has = o > 0
            c[has] = top[o[has]]
        c *= factor[rows, :, None]
        np.clip(c, 0, 255, out=c)
        out[rows, :, :3] = c
    return out


def _epochs(style: CityStyle, plan: Plan, diff: Difficulty,
            rng: np.random.Generator) -> tuple[Epoch, Epoch]:
    """The town as the ground views see it, and at the later (aerial) time: other sun,
    season, paint, buildings and parked cars, as far as the difficulty knobs say."""
    B = len(plan.boxes)
    sun_g = Sun(float(rng.uniform(0, 2 * np.pi)), float(np.radians(rng.uniform(30, 65))))
    sun_a = Sun(float(sun_g.az + diff.lighting * rng.uniform(-np.pi, np.pi)),
                float(np.clip(sun_g.el + diff.lighting * np.radians(rng.uniform(-20, 20)),
                              np.radians(18), np.radians(80))))
    keep = rng.random(B) >= diff.rebuild / 2
    empty = np.ones(len(plan.lots), bool)
    empty[plan.box_lot[plan.box_lot < len(empty)]] = False  # hand-made plans may lack lots
    lots = np.flatnonzero(empty & (plan.lot_kind == 0))
    new, ok = buildings(style, plan.lots[lots[rng.random(lots.size) < diff.rebuild / 2]], rng)
    new = new[ok]
    walls_a, roofs_a = plan.wall.copy(), plan.roof.copy()
    repaint = np.flatnonzero(rng.random(B) < diff.repaint)
    walls_a[repaint] = wall_colours(style, repaint.size, rng)
    roofs_a[repaint] = roof_colours(style, walls_a[repaint], rng)
    new_walls = wall_colours(style, len(new), rng).reshape(-1, 3)
    new_roofs = roof_colours(style, new_walls, rng).reshape(-1, 3)
    cars_a, car_rgb_a = vehicles(plan, style, diff.vehicles, rng)
    season_kind = int(rng.integers(3))
    grass_t = np.array([[150, 140, 70], [170, 150, 105], [215, 215, 220]][season_kind], float)
    leaf_t = np.array([[190, 110, 40], [120, 120, 55], [125, 110, 95]][season_kind], float)
    later = Epoch(np.vstack([plan.boxes[keep], new.reshape(-1, 5)]),
                  np.vstack([walls_a[keep], new_walls]), np.vstack([roofs_a[keep], new_roofs]),
                  _season(plan.tree_rgb, leaf_t, diff.season),
                  _season(np.array(style.grass), grass_t, diff.season), cars_a, car_rgb_a, sun_a)
    cars_g, car_rgb_g = vehicles(plan, style, diff.vehicles, rng)
    now = Epoch(plan.boxes, plan.wall, plan.roof, plan.tree_rgb, np.array(style.grass, float),
                cars_g, car_rgb_g, sun_g)
    return now, later


def _stamp(ep: Epoch, plan: Plan, grid: _Grid, gmat: np.ndarray):
    """Height, material and object rasters; object ids: buildings, trees, cars, from 1."""
    B, T = len(ep.boxes), len(plan.trees)
    height = np.zeros(grid.shape, np.float32)
    mat = gmat.copy()
    obj = np.zeros(grid.shape, np.int32)
    _stamp_boxes(ep.boxes, np.arange(1, B + 1), grid, height, mat, obj, BUILDING)
    _stamp_trees(plan.trees, B + 1, grid, height, mat, obj)
    _stamp_boxes(ep.cars, np.arange(B + T + 1, B + T + 1 + len(ep.cars)), grid, height, mat,
                 obj, VEHICLE)
    return height, mat, obj


def _aerial_raster(ep: Epoch, plan: Plan, style: CityStyle, grid: _Grid, gmat: np.ndarray,
                   detail: np.ndarray) -> np.ndarray:
    height, mat, obj = _stamp(ep, plan, grid, gmat)
    top_lut = np.vstack([np.zeros((1, 3)), ep.roof, ep.tree_rgb, ep.car_rgb]).astype(np.float32)
    shadow = _shadow_mask(np.vstack([ep.boxes, ep.cars]), plan.trees, ep.sun, grid)
    shadow[mat == BUILDING] = 0          # roofs stand above the shadows
    factor = _shade(detail, shadow, ep.sun)
    canopy = mat == CANOPY               # crowns rounder towards their tops
    factor[canopy] *= 0.75 + 0.25 * height[canopy] / max(float(height.max()), 1.0)
    return _paint(gmat, _ground_lut(style, ep.grass), factor, obj, top_lut)


def _ground_capture(ep: Epoch, plan: Plan, style: CityStyle, grid: _Grid, gmat: np.ndarray,
                    detail: np.ndarray, z0: float) -> GroundCapture:
    height, mat, obj = _stamp(ep, plan, grid, gmat)
    gmat = gmat.copy()
    wall = np.vstack([np.zeros((1, 3)), ep.wall, ep.tree_rgb, ep.car_rgb]).astype(np.float32)
    roof = np.vstack([np.zeros((1, 3)), ep.roof, ep.tree_rgb, ep.car_rgb]).astype(np.float32)
    shadow = _shadow_mask(np.vstack([ep.boxes, ep.cars]), plan.trees, ep.sun, grid)
    rgba = _paint(gmat, _ground_lut(style, ep.grass), _shade(detail, shadow, ep.sun),
                  channels=4)
    for ring in (mat, gmat, obj, height):  # flat grass around the town: rays clip onto it
        ring[[0, -1], :] = 0
        ring[:, [0, -1]] = 0
    rel = np.stack([height - z0, np.where(mat == CANOPY, 0.0, np.where(mat == TRUNK, z0, height))
                    - z0], axis=-1).astype(np.float32)
    rel = tiled(rel).view(np.complex64).ravel()
    return GroundCapture(grid.res, plan.size, grid.shape, rel, tiled(mat), tiled(obj), gmat,
                         rgba.view(np.uint32).ravel(), wall, roof, ep.sun, style.window, z0)


def build_district(style: CityStyle, plan: Plan, res: float, diff: Difficulty,
                   rng: np.random.Generator, z0: float = 2.0, aerial: bool = True,
                   later: bool = False) -> District:
    """Rasterise a plan: the ground capture, plus the later time seen from above (`aerial`)
    and/or from the street (`later`, for VG queries taken at another time)."""
    grid = _Grid(res, plan.size)
    gmat = _ground_materials(plan, style, grid)
    detail = value_noise(grid.shape, rng)
    now, then = _epochs(style, plan, diff, rng)
    aerial_rgb = _aerial_raster(then, plan, style, grid, gmat, detail) if aerial else None
    later_cap = _ground_capture(then, plan, style, grid, gmat, detail, z0) if later else None
    ground = _ground_capture(now, plan, style, grid, gmat, detail, z0)
    return District(style, plan, ground, aerial_rgb, then.sun, later_cap)
