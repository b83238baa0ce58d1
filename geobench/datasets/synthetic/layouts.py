"""The real on-disk layouts: CVUSA and VG here, VIGOR in `layout_vigor.py`.

Each writer first plans where every image goes (sites.py: cheap, no pixels), then renders
them as tasks (pool.py: any number of processes, same bytes) and writes exactly the files
(names, folders, split files) of the real dataset, plus `synthetic_locations.csv` at the root: one row per
written image with its city, lat/lon, UTM and heading (extra to the real layout, for
tests, plots and the curious; adapters need not read it).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from geobench.datasets.synthetic import scene
from geobench.datasets.synthetic.difficulty import Difficulty
from geobench.datasets.synthetic.options import AERIAL_EXTENT_M, SyntheticOptions
from geobench.datasets.synthetic.pool import Job, run_tasks
from geobench.datasets.synthetic.sites import Site, plan_city, rng_for, street_area
from geobench.datasets.synthetic.town import street_points
from geobench.fileio import atomic_open
from geobench.geometry import gps

LOCATIONS_FILE = "synthetic_locations.csv"
VG_MARGIN = 30.0


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
    import pandas as pd

    with atomic_open(root / LOCATIONS_FILE, "w") as handle:
        pd.DataFrame(rows).to_csv(handle, index=False, float_format="%.9g", lineterminator="\n")


def street_pick(margin: float, spacing: float):
    """A `pick` for sites.plan_city: up to k street locations >= spacing apart, `margin` m
    inside the district's edges."""
    def pick(site, k: int, rng: np.random.Generator):
        side = site.size[0]
        pts = street_points(site.plan, site.style, k, rng,
                            (margin, margin, side - margin, side - margin), spacing)
        return pts, len(pts)
    return pick


def cvusa_margin(diff: Difficulty) -> float:
    return AERIAL_EXTENT_M["cvusa"] / 2 * math.sqrt(2) + diff.offset_m + 5


def plan_cvusa(opts: SyntheticOptions, diff: Difficulty, total: int) -> list[Site]:
    margin = cvusa_margin(diff)
    area = street_area(diff.spacing_m)
    return [site for city, n_city in enumerate(split_counts(total, opts.cities)) if n_city
            for site in plan_city(opts, diff, city, n_city, area, margin,
                                  street_pick(margin, diff.spacing_m))]


def write_cvusa(opts: SyntheticOptions, diff: Difficulty, root: Path, n_test: int) -> list[dict]:
    """bingmap/19/NNNNNNN.jpg, streetview/panos/NNNNNNN.jpg, splits/{train,val}-19zl.csv."""
    total = opts.pairs + n_test
    rng = rng_for(opts.seed, 3)
    ids = rng.permutation(total) + 1
    is_test = np.zeros(total, bool)
    is_test[rng.choice(total, n_test, replace=False)] = True
    sites = plan_cvusa(opts, diff, total)
    tasks, j = [], 0
    for s, site in enumerate(sites):
        for x, y in site.picked:
            tasks.append((s, (j, float(x), float(y), int(ids[j]), bool(is_test[j]))))
            j += 1
    job = Job(opts, diff, root, dict(enumerate(sites)))
    rows, lines = [], {"train": [], "val": []}
    for split, entry, pair_rows in run_tasks(job, tasks, cvusa_pair, opts.workers,
                                             "synthetic cvusa pairs"):
        lines[split].append(entry)
        rows += pair_rows
    for split, entries in lines.items():
        with atomic_open(root / "splits" / f"{split}-19zl.csv", "w") as handle:
            handle.write("".join(text for _, text in sorted(entries)))
    return rows


def cvusa_pair(town: scene.Town, payload, job: Job):
    """Render and write one pair (and its label map); runs in any worker."""
    opts, diff, root = job.opts, job.diff, job.root
    j, x, y, ident, test = payload
    aerial_px, (H, W) = opts.sizes
    r = rng_for(opts.seed, 5, j)
    heading = r.uniform(-0.5, 0.5) * diff.heading_jitter_deg
    pano, labels, real = scene.ground_pano(town, x, y, H, W, scene.horizon_for("cvusa"), diff,
                                           r, heading)
    rho, phi = diff.offset_m * math.sqrt(r.random()), r.uniform(0, 2 * math.pi)
    cx, cy = x + rho * math.sin(phi), y + rho * math.cos(phi)
    sat = scene.aerial(town, cx, cy, AERIAL_EXTENT_M["cvusa"], aerial_px, diff, r)
    name = f"{ident:07d}"
    a, g, s = (f"bingmap/19/{name}.jpg", f"streetview/panos/{name}.jpg",
               f"streetview/annotations/{name}.png")
    scene.save(root / a, sat, diff.jpeg_quality)
    scene.save(root / g, pano, diff.jpeg_quality)
    if opts.annotations:
        scene.save(root / s, labels, 100)
    split = "val" if test else "train"
    return split, (ident, f"{a},{g},{s}\n"), [
        location_row(town, g, x, y, split, "query", "ground", real),
        location_row(town, a, cx, cy, split, "reference", "aerial", None)]


def vg_name(row: dict, pano_id: str, tile: str, heading: int, timestamp: str) -> str:
    """The gmberton VG file name: @east@north@zone@letter@lat@lon@pano@tile@heading@...@.jpg"""
    return (f"@{row['utm_e']:010.2f}@{row['utm_n']:010.2f}@{row['utm_zone']:02d}"
            f"@{row['utm_letter']}@{row['lat']:09.5f}@{row['lon']:010.5f}@{pano_id}@{tile}"
            f"@{heading:03d}@@@@{timestamp}@@.jpg")


def _vg_spacings(diff: Difficulty) -> tuple[float, float]:
    return max(2.0, diff.spacing_m / 4), max(3.0, diff.spacing_m / 2)


def _vg_pick(margin: float, q_spacing: float, db_spacing: float):
    """Queries along the streets, then the database places around them (see write_vg)."""
    def pick(site, k: int, rng: np.random.Generator):
        side = site.size[0]
        bounds = (margin, margin, side - margin, side - margin)
        queries = street_points(site.plan, site.style, None, rng, bounds, q_spacing)
        places = street_points(site.plan, site.style, None, rng, bounds, db_spacing)
        if not len(queries) or not len(places):
            return (queries[:0], places), 0
        # the database covers the queries' surroundings (every query gets 25 m positives)
        # plus as many places elsewhere as there are queries (distractors), not the whole
        # district; a query without a place within 20 m is not used (crowded corners)
        from scipy.spatial import cKDTree

        served = cKDTree(places).query(queries, distance_upper_bound=20.0)[0] < 20.0
        queries = queries[served][:k]
        if not len(queries):
            return (queries, places), 0
        near = cKDTree(queries).query(places, distance_upper_bound=20.0)[0] < 20.0
        others = np.flatnonzero(~near)
        extra = rng.choice(others, min(len(others), len(queries)), replace=False) \
            if len(others) else others
        keep = near.copy()
        keep[extra] = True
        return (queries, places[keep]), len(queries)
    return pick


def plan_vg(opts: SyntheticOptions, diff: Difficulty, n_test: int) -> list[tuple[str, list[Site]]]:
    """Per split (train, val, test; disjoint areas of each city): its sites."""
    n_val = max(1, n_test // 2)
    q_spacing, db_spacing = _vg_spacings(diff)
    area = street_area(q_spacing)
    pick = _vg_pick(VG_MARGIN, q_spacing, db_spacing)
    out = []
    for s_i, (split, n) in enumerate((("train", opts.pairs), ("val", n_val), ("test", n_test))):
        out.append((split, [site for city, n_city in enumerate(split_counts(n, opts.cities))
                            if n_city for site in plan_city(opts, diff, city, n_city, area,
                                                            VG_MARGIN, pick, s_i)]))
    return out


def write_vg(opts: SyntheticOptions, diff: Difficulty, root: Path, n_test: int) -> list[dict]:
    """images/{train,val,test}/{database,queries}/@...@.jpg (database: crops every
    360/vg_crops degrees at places along the streets; queries: other positions, random
    headings, captured at the later time: see scene.ground_crop)."""
    sites, tasks = {}, []
    for s_i, (split, split_sites) in enumerate(plan_vg(opts, diff, n_test)):
        for site in split_sites:
            s = len(sites)
            sites[s] = site
            key = 1000 * (s_i + 1) + site.city
            queries, places = site.picked
            tasks += [(s, ("db", split, key, p, float(x), float(y)))
                      for p, (x, y) in enumerate(places)]
            tasks += [(s, ("q", split, key, q, float(x), float(y)))
                      for q, (x, y) in enumerate(queries)]
    job = Job(opts, diff, root, sites)
    done = run_tasks(job, tasks, vg_image, opts.workers, "synthetic vg places and queries")
    return [row for rows in done for row in rows]


def vg_image(town: scene.Town, payload, job: Job) -> list[dict]:
    """A database place (vg_crops crops) or one query; runs in any worker."""
    opts, diff, root = job.opts, job.diff, job.root
    kind, split, key, p, x, y = payload
    _, (H, W) = opts.sizes
    rows = []
    if kind == "db":
        r = rng_for(opts.seed, 7, key, town.index, p)
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
        return rows
    r = rng_for(opts.seed, 8, key, town.index, p)
    heading = int(r.integers(0, 360))
    img = scene.ground_crop(town, x, y, H, W, opts.vg_hfov_deg, heading, diff, r, True)
    row = location_row(town, "", x, y, split, "query", "street", float(heading))
    name = vg_name(row, f"{town.name}{town.index:02d}q{p:06d}", "", heading, "20190415")
    row["path"] = f"images/{split}/queries/{name}"
    scene.save(root / row["path"], img, diff.jpeg_quality)
    return [row]
