"""The real on-disk layouts: CVUSA and VG here, VIGOR in `layout_vigor.py`.

Each writer renders one district at a time and writes exactly the files (names, folders,
split files) of the real dataset, plus `synthetic_locations.csv` at the root: one row per
written image with its city, lat/lon, UTM and heading (extra to the real layout, for
tests, plots and the curious; adapters need not read it).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from geobench.datasets.synthetic import scene
from geobench.datasets.synthetic.difficulty import Difficulty
from geobench.datasets.synthetic.options import AERIAL_EXTENT_M, SyntheticOptions
from geobench.datasets.synthetic.town import street_points
from geobench.errors import UsageError
from geobench.fileio import atomic_open
from geobench.geometry import gps
from geobench.progress import bar

LOCATIONS_FILE = "synthetic_locations.csv"
BLOCK_M = 85.0   # typical road spacing, to size districts before their style is known


def split_counts(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def location_row(town: scene.Town, path: str, x: float, y: float, split: str, role: str,
                 view: str, heading: float | None, **extra) -> dict:
    lat, lon = town.latlon(x, y)
    e, n, zone, letter = gps.latlon_to_utm(lat, lon)
    return {"path": path, "split": split, "role": role, "view": view, "city": town.name,
            "lat": float(lat), "lon": float(lon), "utm_e": float(e), "utm_n": float(n),
            "utm_zone": int(zone), "utm_letter": str(letter), "x": float(x), "y": float(y),
            "district": town.index, "heading": heading, **extra}


def write_locations(root: Path, rows: list[dict]) -> None:
    with atomic_open(root / LOCATIONS_FILE, "w") as handle:
        pd.DataFrame(rows).to_csv(handle, index=False, float_format="%.9g", lineterminator="\n")


def _short(got: int, want: int, town: scene.Town, diff: Difficulty) -> UsageError:
    return UsageError(f"district {town.name}/{town.index} holds only {got} of {want} locations "
                      f"{diff.spacing_m} m apart; lower the difficulty's spacing_m or add --cities")


def write_cvusa(opts: SyntheticOptions, diff: Difficulty, root: Path, n_test: int) -> list[dict]:
    """bingmap/19/NNNNNNN.jpg, streetview/panos/NNNNNNN.jpg, splits/{train,val}-19zl.csv."""
    aerial_px, (H, W) = opts.sizes
    extent = AERIAL_EXTENT_M["cvusa"]
    total = opts.pairs + n_test
    rng = scene.rng_for(opts.seed, 3)
    ids = rng.permutation(total) + 1
    is_test = np.zeros(total, bool)
    is_test[rng.choice(total, n_test, replace=False)] = True
    margin = extent / 2 * math.sqrt(2) + diff.offset_m + 5
    area = 2.2 * diff.spacing_m * BLOCK_M / 2
    rows, lines = [], {"train": [], "val": []}
    j = 0
    with bar("synthetic cvusa pairs", total) as progress:
        for city, n_city in enumerate(split_counts(total, opts.cities)):
            if n_city == 0:
                continue
            for town, k in scene.towns(opts, diff, city, n_city, area, margin):
                side = town.size[0]
                pts = street_points(town.district.plan, town.district.style, k,
                                    scene.rng_for(opts.seed, 4, city, town.index),
                                    (margin, margin, side - margin, side - margin), diff.spacing_m)
                if len(pts) < k:
                    raise _short(len(pts), k, town, diff)
                for x, y in pts:
                    r = scene.rng_for(opts.seed, 5, j)
                    heading = r.uniform(-0.5, 0.5) * diff.heading_jitter_deg
                    pano, labels, real = scene.ground_pano(town, x, y, H, W, scene.horizon_for(
                        "cvusa"), diff, r, heading)
                    rho, phi = diff.offset_m * math.sqrt(r.random()), r.uniform(0, 2 * math.pi)
                    cx, cy = x + rho * math.sin(phi), y + rho * math.cos(phi)
                    sat = scene.aerial(town, cx, cy, extent, aerial_px, diff, r)
                    name = f"{ids[j]:07d}"
                    a, g, s = (f"bingmap/19/{name}.jpg", f"streetview/panos/{name}.jpg",
                               f"streetview/annotations/{name}.png")
                    scene.save(root / a, sat, diff.jpeg_quality)
                    scene.save(root / g, pano, diff.jpeg_quality)
                    if opts.annotations:
                        scene.save(root / s, labels, 100)
                    split = "val" if is_test[j] else "train"
                    lines[split].append((int(ids[j]), f"{a},{g},{s}\n"))
                    rows.append(location_row(town, g, x, y, split, "query", "ground", real))
                    rows.append(location_row(town, a, cx, cy, split, "reference", "aerial", None))
                    j += 1
                    progress.advance()
    for split, entries in lines.items():
        with atomic_open(root / "splits" / f"{split}-19zl.csv", "w") as handle:
            handle.write("".join(text for _, text in sorted(entries)))
    return rows


def vg_name(row: dict, pano_id: str, tile: str, heading: int, timestamp: str) -> str:
    """The gmberton VG file name: @east@north@zone@letter@lat@lon@pano@tile@heading@...@.jpg"""
    return (f"@{row['utm_e']:010.2f}@{row['utm_n']:010.2f}@{row['utm_zone']:02d}"
            f"@{row['utm_letter']}@{row['lat']:09.5f}@{row['lon']:010.5f}@{pano_id}@{tile}"
            f"@{heading:03d}@@@@{timestamp}@@.jpg")


def write_vg(opts: SyntheticOptions, diff: Difficulty, root: Path, n_test: int) -> list[dict]:
    """images/{train,val,test}/{database,queries}/@...@.jpg (database: crops every
    360/vg_crops degrees at places along the streets; queries: other positions, random
    headings, captured at another time)."""
    _, (H, W) = opts.sizes
    n_val = max(1, n_test // 2)
    rows: list[dict] = []
    q_spacing = max(2.0, diff.spacing_m / 4)
    db_spacing = max(3.0, diff.spacing_m / 2)
    area = 2.2 * q_spacing * BLOCK_M / 2
    margin = 30.0
    with bar("synthetic vg queries", opts.pairs + n_val + n_test) as progress:
        for s_i, (split, n) in enumerate((("train", opts.pairs), ("val", n_val),
                                          ("test", n_test))):
            for city, n_city in enumerate(split_counts(n, opts.cities)):
                if n_city == 0:
                    continue
                key = 1000 * (s_i + 1) + city
                for town, k in scene.towns(opts, diff, city, n_city, area, margin, s_i):
                    rows += _vg_town(opts, diff, root, town, split, k, (H, W), margin,
                                     q_spacing, db_spacing, key)
                    progress.advance(k)
    return rows


def _vg_town(opts, diff, root, town, split, k, size, margin, q_spacing, db_spacing, key):
    H, W = size
    side = town.size[0]
    bounds = (margin, margin, side - margin, side - margin)
    plan, style = town.district.plan, town.district.style
    rng = scene.rng_for(opts.seed, 6, key, town.index)
    queries = street_points(plan, style, k, rng, bounds, q_spacing)
    if len(queries) < k:
        raise _short(len(queries), k, town, diff)
    street = (len(plan.roads_x) + len(plan.roads_y)) * (side - 2 * margin)
    places = street_points(plan, style, int(street / db_spacing), rng, bounds, db_spacing, tries=3)
    # the database covers the queries' surroundings (every query gets 25 m positives) plus
    # as many places elsewhere as there are queries (distractors), not the whole district
    near = np.hypot(places[:, None, 0] - queries[None, :, 0],
                    places[:, None, 1] - queries[None, :, 1]).min(axis=1) < 20.0
    others = np.flatnonzero(~near)
    extra = rng.choice(others, min(len(others), k), replace=False) if len(others) else others
    keep = np.zeros(len(places), bool)
    keep[near] = True
    keep[extra] = True
    places = places[keep]
    rows = []
    folder = root / "images" / split
    for p, (x, y) in enumerate(places):
        r = scene.rng_for(opts.seed, 7, key, town.index, p)
        h0 = r.uniform(0, 360)
        for c in range(opts.vg_crops):
            heading = int(round(h0 + 360 * c / opts.vg_crops)) % 360
            img = scene.ground_crop(town, x, y, H, W, opts.vg_hfov_deg, heading, diff, r, False)
            row = location_row(town, "", x, y, split, "reference", "street", float(heading))
            name = vg_name(row, f"{town.name}{town.index:02d}p{p:06d}", f"{c:02d}", heading,
                           "201606")
            row["path"] = f"images/{split}/database/{name}"
            scene.save(root / row["path"], img, diff.jpeg_quality)
            rows.append(row)
    for q, (x, y) in enumerate(queries):
        r = scene.rng_for(opts.seed, 8, key, town.index, q)
        heading = int(r.integers(0, 360))
        img = scene.ground_crop(town, x, y, H, W, opts.vg_hfov_deg, heading, diff, r, True)
        row = location_row(town, "", x, y, split, "query", "street", float(heading))
        name = vg_name(row, f"{town.name}{town.index:02d}q{q:06d}", "", heading, "20190415")
        row["path"] = f"images/{split}/queries/{name}"
        scene.save(root / row["path"], img, diff.jpeg_quality)
        rows.append(row)
    return rows
