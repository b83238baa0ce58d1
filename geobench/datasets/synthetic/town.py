"""Procedural town plans: a road grid, lots, box buildings and trees, as plain arrays.

A city has a style (block sizes, road widths, building heights, a colour palette) drawn
from its seed; a district is one rectangular piece of that city, planned independently.
Coordinates are metres in the district's frame: x east, y north, origin at the SW corner.
Nothing here touches pixels; `world.py` rasterises the plan.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CityStyle:
    name: str
    block_mean: float          # distance between road centre lines, metres
    road_width: float
    sidewalk: float
    lot_front: float
    height_median: float
    height_sigma: float
    build_prob: float
    tree_spacing: float        # street trees: mean distance along a kerb
    hues: tuple[float, ...]    # wall hues of the city palette
    sat: tuple[float, float]
    val: tuple[float, float]
    roof_mode: int             # how roof colour follows wall colour (0: darker, 1: greyer, 2: warm)
    window: tuple[float, float]  # window width / floor height fractions
    asphalt: tuple[float, float, float]
    sidewalk_rgb: tuple[float, float, float]
    grass: tuple[float, float, float]


def city_style(name: str, rng: np.random.Generator, variety: float) -> CityStyle:
    """A city's look; low `variety` narrows colours and heights so places look alike."""
    n_hues = max(1, int(round(1 + 5 * variety)))
    base = rng.uniform(0, 1)
    hues = tuple(float((base + rng.uniform(-0.5, 0.5) * (0.15 + 0.85 * variety)) % 1)
                 for _ in range(n_hues))
    grey = rng.uniform(70, 110)
    return CityStyle(
        name=name,
        block_mean=float(rng.uniform(60, 105)),
        road_width=float(rng.uniform(8, 14)),
        sidewalk=float(rng.uniform(2.0, 3.5)),
        lot_front=float(rng.uniform(12, 26)),
        height_median=float(rng.uniform(6, 22)),
        height_sigma=float(0.15 + 0.45 * variety),
        build_prob=float(rng.uniform(0.6, 0.95)),
        tree_spacing=float(rng.uniform(8, 25)),
        hues=hues,
        sat=(float(0.05 + 0.1 * rng.random()), float(0.3 + 0.3 * variety)),
        val=(float(0.55 - 0.15 * variety), 0.92),
        roof_mode=int(rng.integers(0, 3)),
        window=(float(rng.uniform(0.3, 0.6)), float(rng.uniform(0.3, 0.55))),
        asphalt=(grey, grey, grey * rng.uniform(1.0, 1.08)),
        sidewalk_rgb=tuple(float(v) for v in rng.uniform(150, 195) * np.array([1, 0.98, 0.94])),
        grass=tuple(float(v) for v in np.array([75, 120, 55]) * rng.uniform(0.85, 1.15, 3)),
    )


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised colorsys.hsv_to_rgb: (N,) each in [0, 1] -> (N, 3) in [0, 255]."""
    h, s, v = (np.asarray(a, float) for a in (h % 1.0, s, v))
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v),
                                                (t, p, v), (v, p, q))])
    return table[i.astype(int) % 6, np.arange(h.size)] * 255


def rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised colorsys.rgb_to_hsv of (N, 3) colours in [0, 255]."""
    r, g, b = (rgb / 255.0).T
    mx, mn = rgb.max(axis=1) / 255.0, rgb.min(axis=1) / 255.0
    span = np.where(mx > mn, mx - mn, 1.0)
    rc, gc, bc = (mx - r) / span, (mx - g) / span, (mx - b) / span
    h = np.where(r == mx, bc - gc, np.where(g == mx, 2.0 + rc - bc, 4.0 + gc - rc))
    h = np.where(mx > mn, (h / 6.0) % 1.0, 0.0)
    s = np.where(mx > 0, (mx - mn) / np.where(mx > 0, mx, 1.0), 0.0)
    return h, s, mx


def wall_colours(style: CityStyle, n: int, rng: np.random.Generator) -> np.ndarray:
    hues = np.asarray(style.hues)[rng.integers(len(style.hues), size=n)]
    h = hues + rng.normal(0, 0.02, n)
    return hsv_to_rgb(h, rng.uniform(*style.sat, n), rng.uniform(*style.val, n))


def roof_colours(style: CityStyle, walls: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Roofs follow walls (same hue family) so the aerial and ground views share cues."""
    h, s, v = rgb_to_hsv(np.asarray(walls, float).reshape(-1, 3))
    if style.roof_mode == 0:
        s, v = s * 0.9, v * 0.62
    elif style.roof_mode == 1:
        s, v = s * 0.4, v * 0.8
    else:
        h, s, v = (h * 0.7 + 0.03 * 0.3), np.minimum(1, s + 0.25), v * 0.7
    v = v * rng.uniform(0.92, 1.08, h.size)
    return hsv_to_rgb(h, np.minimum(s, 1), np.minimum(v, 1))


def wall_colour(style: CityStyle, rng: np.random.Generator) -> np.ndarray:
    return wall_colours(style, 1, rng)[0]


def roof_colour(style: CityStyle, wall: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return roof_colours(style, wall, rng)[0]


@dataclass
class Plan:
    """A district's objects as arrays (metres, district frame)."""

    size: tuple[float, float]
    roads_x: np.ndarray            # x of north-south road centre lines
    roads_y: np.ndarray            # y of east-west road centre lines
    lots: np.ndarray               # (L, 4) x0, y0, x1, y1 of building lots
    lot_kind: np.ndarray           # (L,) 0 yard, 1 plaza
    boxes: np.ndarray              # (B, 5) x0, y0, x1, y1, height (buildings)
    box_lot: np.ndarray            # (B,) lot index of each building
    wall: np.ndarray               # (B, 3) float RGB
    roof: np.ndarray               # (B, 3)
    trees: np.ndarray              # (T, 4) x, y, radius, top height
    tree_rgb: np.ndarray           # (T, 3)
    extras: dict = field(default_factory=dict)


def _road_lines(length: float, mean: float, rng: np.random.Generator) -> np.ndarray:
    lines, pos = [], rng.uniform(0.2, 0.8) * mean
    while pos < length:
        lines.append(pos)
        pos += mean * rng.uniform(0.7, 1.3)
    return np.array(lines if lines else [length / 2])


def buildings(style: CityStyle, lots: np.ndarray, rng: np.random.Generator):
    """A box in each lot, inset from its edges: (L, 5) boxes and (L,) 'big enough' mask."""
    lots = np.asarray(lots, float).reshape(-1, 4)
    inset = rng.uniform(0.5, 4.0, size=(len(lots), 4))
    box = lots + inset * np.array([1, 1, -1, -1])
    height = style.height_median * np.exp(rng.normal(0, style.height_sigma, len(lots)))
    ok = (box[:, 2] - box[:, 0] >= 5) & (box[:, 3] - box[:, 1] >= 5)
    return np.hstack([box, np.clip(height, 3.0, 60.0)[:, None]]), ok


def building(style: CityStyle, lot: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    box, ok = buildings(style, lot, rng)
    return box[0] if ok[0] else None


def _line_points(length: float, mean: float, rng: np.random.Generator) -> np.ndarray:
    """Positions along [0, length) at gaps of mean x U(0.6, 1.4), from U(0, mean)."""
    m = int(length / (0.6 * mean)) + 2
    pos = rng.uniform(0, mean) + np.concatenate([[0.0], np.cumsum(mean * rng.uniform(0.6, 1.4,
                                                                                    m - 1))])
    return pos[pos < length]


def plan_district(style: CityStyle, size: tuple[float, float],
                  rng: np.random.Generator) -> Plan:
    sx, sy = size
    rx = _road_lines(sx, style.block_mean, rng)
    ry = _road_lines(sy, style.block_mean, rng)
    edge = style.road_width / 2 + style.sidewalk
    xs = np.concatenate([[-edge], rx, [sx + edge]])
    ys = np.concatenate([[-edge], ry, [sy + edge]])
    lots, kinds, trees = [], [], []
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            bx0, bx1 = xs[i] + edge, xs[i + 1] - edge
            by0, by1 = ys[j] + edge, ys[j + 1] - edge
            if bx1 - bx0 < 8 or by1 - by0 < 8:
                continue
            use = rng.random()
            if use < 0.08:  # park: trees only
                n = int((bx1 - bx0) * (by1 - by0) / 120)
                trees.append(np.stack([rng.uniform(bx0 + 2, bx1 - 2, n),
                                       rng.uniform(by0 + 2, by1 - 2, n),
                                       rng.uniform(2.0, 4.5, n), rng.uniform(6, 13, n)], 1))
                continue
            rows = 2 if by1 - by0 > 34 else 1
            cols = max(1, int(round((bx1 - bx0) / style.lot_front)))
            gx = np.linspace(bx0, bx1, cols + 1)
            gy = np.linspace(by0, by1, rows + 1)
            a, b = np.meshgrid(np.arange(cols), np.arange(rows), indexing="ij")
            a, b = a.ravel(), b.ravel()
            lots.append(np.stack([gx[a], gy[b], gx[a + 1], gy[b + 1]], 1))
            kinds.append(np.full(a.size, 1 if use < 0.14 else 0, np.int8))
    lots_a = np.vstack(lots) if lots else np.zeros((0, 4))
    kind_a = np.concatenate(kinds) if kinds else np.zeros(0, np.int8)
    boxes, ok = buildings(style, lots_a, rng)
    ok &= (kind_a == 0) & (rng.random(len(lots_a)) <= style.build_prob)
    box_lot = np.flatnonzero(ok)
    walls = wall_colours(style, box_lot.size, rng)
    roofs = roof_colours(style, walls, rng)
    # street trees along both kerbs of every road, in the sidewalk band
    for axis, lines, length in ((0, rx, sy), (1, ry, sx)):
        for c in lines:
            for side in (-1, 1):
                off = c + side * (style.road_width / 2 + style.sidewalk * 0.5)
                pos = _line_points(length, style.tree_spacing, rng)
                pos = pos[rng.random(pos.size) < 0.7]
                xy = [np.full(pos.size, off), pos] if axis == 0 else [pos, np.full(pos.size, off)]
                trees.append(np.stack(xy + [rng.uniform(1.5, 3.2, pos.size),
                                            rng.uniform(5, 10, pos.size)], 1))
    trees_a = np.vstack(trees).reshape(-1, 4) if trees else np.zeros((0, 4))
    leaf = np.array([60.0, 105, 45])
    tree_rgb = leaf[None, :] * rng.uniform(0.75, 1.25, size=(len(trees_a), 3))
    return Plan(size=size, roads_x=rx, roads_y=ry, lots=lots_a, lot_kind=kind_a,
                boxes=boxes[box_lot].reshape(-1, 5), box_lot=box_lot.astype(np.int64),
                wall=walls.reshape(-1, 3), roof=roofs.reshape(-1, 3), trees=trees_a,
                tree_rgb=tree_rgb)


def street_points(plan: Plan, style: CityStyle, n: int | None, rng: np.random.Generator,
                  bounds: tuple[float, float, float, float], spacing: float) -> np.ndarray:
    """Up to n camera positions (all that fit for None) on the carriageways inside bounds,
    >= spacing apart, in random order.

    Vectorised: each road gets positions at gaps of spacing x (1 + exponential), which packs
    about as densely as random sequential placement; the only conflicts left are across
    roads (crossings, close parallel roads), and of each such close pair one is dropped.
    """
    from scipy.spatial import cKDTree

    x0, y0, x1, y1 = bounds
    lane = max(0.5, style.road_width / 2 - 1.0)
    segs = [(0, c) for c in plan.roads_x if x0 + lane <= c <= x1 - lane] + \
           [(1, c) for c in plan.roads_y if y0 + lane <= c <= y1 - lane]
    if not segs or (n is not None and n <= 0):
        return np.zeros((0, 2))
    parts = []
    for axis, c in segs:
        lo, hi = (y0, y1) if axis == 0 else (x0, x1)
        gaps = spacing * (1.0 + rng.exponential(0.25, int((hi - lo) // spacing) + 2))
        t = lo + rng.uniform(0, spacing) + np.concatenate([[0.0], np.cumsum(gaps[:-1])])
        t = t[t <= hi]
        side = c + rng.uniform(-lane, lane, t.size)
        parts.append(np.stack([side, t] if axis == 0 else [t, side], axis=1))
    pts = np.vstack(parts)
    pts = pts[rng.permutation(len(pts))]
    close = cKDTree(pts).query_pairs(spacing, output_type="ndarray")
    keep = np.ones(len(pts), bool)
    if len(close):
        # greedy in the random order: a point stays unless an earlier kept one is too close
        close.sort(axis=1)
        close = close[np.lexsort((close[:, 0], close[:, 1]))]
        later, earlier = close[:, 1].tolist(), close[:, 0].tolist()
        for j, i in zip(later, earlier, strict=True):
            if keep[i]:
                keep[j] = False
    pts = pts[keep]
    return pts if n is None else pts[:n]
