"""Procedural town plans: a road grid, lots, box buildings and trees, as plain arrays.

A city has a style (block sizes, road widths, building heights, a colour palette) drawn
from its seed; a district is one rectangular piece of that city, planned independently.
Coordinates are metres in the district's frame: x east, y north, origin at the SW corner.
Nothing here touches pixels; `world.py` rasterises the plan.
"""
from __future__ import annotations

import colorsys
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


def wall_colour(style: CityStyle, rng: np.random.Generator) -> np.ndarray:
    h = style.hues[int(rng.integers(len(style.hues)))] + rng.normal(0, 0.02)
    s = rng.uniform(*style.sat)
    v = rng.uniform(*style.val)
    return np.array(colorsys.hsv_to_rgb(h % 1, s, v)) * 255


def roof_colour(style: CityStyle, wall: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Roofs follow walls (same hue family) so the aerial and ground views share cues."""
    h, s, v = colorsys.rgb_to_hsv(*(wall / 255))
    if style.roof_mode == 0:
        s, v = s * 0.9, v * 0.62
    elif style.roof_mode == 1:
        s, v = s * 0.4, v * 0.8
    else:
        h, s, v = (h * 0.7 + 0.03 * 0.3), min(1, s + 0.25), v * 0.7
    v *= rng.uniform(0.92, 1.08)
    return np.array(colorsys.hsv_to_rgb(h % 1, min(s, 1), min(v, 1))) * 255


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


def building(style: CityStyle, lot: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    x0, y0, x1, y1 = lot
    inset = rng.uniform(0.5, 4.0, size=4)
    bx0, by0, bx1, by1 = x0 + inset[0], y0 + inset[1], x1 - inset[2], y1 - inset[3]
    if bx1 - bx0 < 5 or by1 - by0 < 5:
        return None
    height = style.height_median * np.exp(rng.normal(0, style.height_sigma))
    return np.array([bx0, by0, bx1, by1, float(np.clip(height, 3.0, 60.0))])


def plan_district(style: CityStyle, size: tuple[float, float],
                  rng: np.random.Generator) -> Plan:
    sx, sy = size
    rx = _road_lines(sx, style.block_mean, rng)
    ry = _road_lines(sy, style.block_mean, rng)
    edge = style.road_width / 2 + style.sidewalk
    xs = np.concatenate([[-edge], rx, [sx + edge]])
    ys = np.concatenate([[-edge], ry, [sy + edge]])
    lots, kinds, boxes, box_lot, walls, roofs, trees, tree_rgb = [], [], [], [], [], [], [], []
    leaf = np.array([60.0, 105, 45])
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            bx0, bx1 = xs[i] + edge, xs[i + 1] - edge
            by0, by1 = ys[j] + edge, ys[j + 1] - edge
            if bx1 - bx0 < 8 or by1 - by0 < 8:
                continue
            use = rng.random()
            if use < 0.08:  # park: trees only
                n = int((bx1 - bx0) * (by1 - by0) / 120)
                for _ in range(n):
                    trees.append([rng.uniform(bx0 + 2, bx1 - 2), rng.uniform(by0 + 2, by1 - 2),
                                  rng.uniform(2.0, 4.5), rng.uniform(6, 13)])
                continue
            plaza = use < 0.14
            rows = 2 if by1 - by0 > 34 else 1
            cols = max(1, int(round((bx1 - bx0) / style.lot_front)))
            gx = np.linspace(bx0, bx1, cols + 1)
            gy = np.linspace(by0, by1, rows + 1)
            for a in range(cols):
                for b in range(rows):
                    lot = np.array([gx[a], gy[b], gx[a + 1], gy[b + 1]])
                    lots.append(lot)
                    kinds.append(1 if plaza else 0)
                    if plaza or rng.random() > style.build_prob:
                        continue
                    box = building(style, lot, rng)
                    if box is not None:
                        boxes.append(box)
                        box_lot.append(len(lots) - 1)
                        w = wall_colour(style, rng)
                        walls.append(w)
                        roofs.append(roof_colour(style, w, rng))
    # street trees along both kerbs of every road, in the sidewalk band
    for axis, lines, length in ((0, rx, sy), (1, ry, sx)):
        for c in lines:
            for side in (-1, 1):
                off = c + side * (style.road_width / 2 + style.sidewalk * 0.5)
                pos = rng.uniform(0, style.tree_spacing)
                while pos < length:
                    if rng.random() < 0.7:
                        p = [off, pos] if axis == 0 else [pos, off]
                        trees.append(p + [rng.uniform(1.5, 3.2), rng.uniform(5, 10)])
                    pos += style.tree_spacing * rng.uniform(0.6, 1.4)
    trees_a = np.array(trees, dtype=float).reshape(-1, 4)
    tree_rgb = leaf[None, :] * rng.uniform(0.75, 1.25, size=(len(trees_a), 3))
    return Plan(size=size, roads_x=rx, roads_y=ry,
                lots=np.array(lots, dtype=float).reshape(-1, 4),
                lot_kind=np.array(kinds, dtype=np.int8),
                boxes=np.array(boxes, dtype=float).reshape(-1, 5),
                box_lot=np.array(box_lot, dtype=np.int64),
                wall=np.array(walls, dtype=float).reshape(-1, 3),
                roof=np.array(roofs, dtype=float).reshape(-1, 3),
                trees=trees_a, tree_rgb=tree_rgb)


def street_points(plan: Plan, style: CityStyle, n: int, rng: np.random.Generator,
                  bounds: tuple[float, float, float, float], spacing: float,
                  taken: list[np.ndarray] | None = None, tries: int = 40) -> np.ndarray:
    """Up to n camera positions on the carriageways inside bounds, >= spacing apart."""
    x0, y0, x1, y1 = bounds
    segs = [(0, c) for c in plan.roads_x if x0 <= c <= x1] + \
           [(1, c) for c in plan.roads_y if y0 <= c <= y1]
    if not segs:
        return np.zeros((0, 2))
    lengths = np.array([(y1 - y0) if a == 0 else (x1 - x0) for a, _ in segs])
    prob = lengths / lengths.sum()
    cell = spacing
    grid: dict[tuple[int, int], list[np.ndarray]] = {}

    def add(p: np.ndarray) -> None:
        grid.setdefault((int(p[0] // cell), int(p[1] // cell)), []).append(p)

    for p in (taken or []):
        add(p)
    lane = max(0.5, style.road_width / 2 - 1.0)
    out: list[np.ndarray] = []
    misses = 0
    while len(out) < n and misses < tries * max(n, 1):
        axis, c = segs[int(rng.choice(len(segs), p=prob))]
        t = rng.uniform(y0, y1) if axis == 0 else rng.uniform(x0, x1)
        lat = c + rng.uniform(-lane, lane)
        p = np.array([lat, t]) if axis == 0 else np.array([t, lat])
        gi, gj = int(p[0] // cell), int(p[1] // cell)
        near = [q for a in (-1, 0, 1) for b in (-1, 0, 1) for q in grid.get((gi + a, gj + b), [])]
        if any(np.hypot(*(q - p)) < spacing for q in near):
            misses += 1
            continue
        add(p)
        out.append(p)
    return np.array(out).reshape(-1, 2)
