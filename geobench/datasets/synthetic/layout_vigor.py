"""The VIGOR layout: <City>/panorama, <City>/satellite on a half-overlapping lat/lon grid,
and splits/<City>/{satellite_list.txt, pano_label_balanced.txt, same_area_balanced_*.txt}.

As in VIGOR: the grid step is half an image in latitude and longitude (the delta_unit),
each label line names the positive (the satellite whose central quarter holds the
panorama) then the three semi-positives by increasing distance, each followed by the
pixel offsets d0, d1 with the panorama at row = S/2 + d0, col = S/2 - d1 (S the written
satellite size); offsets are rounded to whole pixels and printed like "23.0"; each
positive satellite serves at most two panoramas ("balanced"); some satellite lists end
without a newline, as NewYork's does.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from geobench.datasets.synthetic import scene
from geobench.datasets.synthetic.difficulty import Difficulty
from geobench.datasets.synthetic.layouts import location_row, split_counts
from geobench.datasets.synthetic.options import AERIAL_EXTENT_M, SyntheticOptions
from geobench.datasets.synthetic.town import street_points
from geobench.errors import UsageError
from geobench.fileio import write_text
from geobench.progress import bar

_ID_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


def sat_name(lat: float, lon: float) -> str:
    return f"satellite_{float(lat)!r}_{float(lon)!r}.png"


def write_vigor(opts: SyntheticOptions, diff: Difficulty, root: Path, n_test: int) -> list[dict]:
    total = opts.pairs + n_test
    rng = scene.rng_for(opts.seed, 9)
    test = set(rng.choice(total, n_test, replace=False).tolist())
    extent = AERIAL_EXTENT_M["vigor"]
    stride = extent / 2
    rows: list[dict] = []
    j = 0
    with bar("synthetic vigor panoramas", total) as progress:
        for city, n_city in enumerate(split_counts(total, opts.cities)):
            if n_city == 0:
                continue
            labels: dict[str, list[str]] = {"train": [], "test": []}
            sats: list[str] = []
            # about 1.1 panoramas per grid cell: two at most, and streets miss some cells
            for town, k in scene.towns(opts, diff, city, n_city, stride**2 / 1.1, extent):
                out = _vigor_town(opts, diff, root, town, k, j, test, labels, sats, progress)
                rows += out
                j += k
            name = scene.city_name(city)
            split_dir = root / "splits" / name
            tail = "" if city % 2 else "\n"   # VIGOR's lists differ in the final newline
            write_text(split_dir / "satellite_list.txt", "\n".join(sats) + tail)
            write_text(split_dir / "same_area_balanced_train.txt", "".join(labels["train"]))
            write_text(split_dir / "same_area_balanced_test.txt", "".join(labels["test"]))
            write_text(split_dir / "pano_label_balanced.txt",
                       "".join(sorted(labels["train"] + labels["test"], key=_order)))
    return rows


def _order(line: str) -> str:
    return line.split(",", 1)[0]


def _vigor_town(opts: SyntheticOptions, diff: Difficulty, root: Path, town: scene.Town, k: int,
                first: int, test: set[int], labels: dict, sats: list[str], progress) -> list[dict]:
    aerial_px, (H, W) = opts.sizes
    extent = AERIAL_EXTENT_M["vigor"]
    stride, half = extent / 2, aerial_px / 2
    side = town.size[0]
    # grid in lat/lon, steps of half an image measured at the district centre
    lat_c, lon_c = (float(v) for v in town.latlon(side / 2, side / 2))
    lat_n, _ = town.latlon(side / 2, side / 2 + stride)
    _, lon_e = town.latlon(side / 2 + stride, side / 2)
    dlat, dlon = float(lat_n) - lat_c, float(lon_e) - lon_c
    n_half = int((side / 2 - extent / 2 - 1) // stride)
    if n_half < 2:
        raise UsageError(f"district {town.name}/{town.index} is too small for a VIGOR grid")
    steps = np.arange(-n_half, n_half + 1)
    lats, lons = lat_c + steps * dlat, lon_c + steps * dlon   # row 0 = southernmost
    names = [[sat_name(la, lo) for lo in lons] for la in lats]
    for row_names in names[::-1]:          # satellite_list: north to south, west to east
        sats.extend(row_names)
    rng = scene.rng_for(opts.seed, 10, town.city, town.index)
    inner = (n_half - 1) * stride          # every panorama needs all four covering tiles
    bounds = (side / 2 - inner, side / 2 - inner, side / 2 + inner, side / 2 + inner)
    cands = street_points(town.district.plan, town.district.style, 6 * k, rng, bounds,
                          min(diff.spacing_m, 6.0))
    use = np.zeros((len(lats), len(lons)), np.int64)
    rows: list[dict] = []
    for x, y in cands:
        if len(rows) == k:
            break
        lat, lon = (round(float(v), 6) for v in town.latlon(x, y))
        i, jj = int(round((lat - lat_c) / dlat)) + n_half, int(round((lon - lon_c) / dlon)) + n_half
        if use[i, jj] >= 2 or not (1 <= i < len(lats) - 1 and 1 <= jj < len(lons) - 1):
            continue
        use[i, jj] += 1
        si = 1 if lat >= lats[i] else -1
        sj = 1 if lon >= lons[jj] else -1
        tiles = [(i, jj), (i, jj + sj), (i + si, jj), (i + si, jj + sj)]
        fields = []
        for a, b in tiles:
            d0 = round((lats[a] - lat) / dlat * half)
            d1 = round((lons[b] - lon) / dlon * half)
            fields.append((d0 * d0 + d1 * d1, names[a][b], d0, d1))
        fields = fields[:1] + sorted(fields[1:])
        idx = first + len(rows)
        r = scene.rng_for(opts.seed, 11, idx)
        pano_id = "".join(r.choice(_ID_CHARS, 22))
        fname = f"{pano_id},{lat:.6f},{lon:.6f},.jpg"
        px, py = (float(v) for v in town.local(lat, lon))
        heading = r.uniform(-0.5, 0.5) * diff.heading_jitter_deg
        pano, _, real = scene.ground_pano(town, px, py, H, W, scene.horizon_for("vigor"), diff,
                                          r, heading)
        scene.save(root / town.name / "panorama" / fname, pano, diff.jpeg_quality)
        split = "test" if idx in test else "train"
        labels[split].append(fname + "".join(f" {n} {float(d0):.1f} {float(d1):.1f}"
                                             for _, n, d0, d1 in fields) + "\n")
        rows.append(location_row(town, f"{town.name}/panorama/{fname}", px, py, split, "query",
                                 "ground", real, positive=fields[0][1]))
        progress.advance()
    if len(rows) < k:
        raise UsageError(f"district {town.name}/{town.index} holds only {len(rows)} of {k} "
                         f"VIGOR panoramas; add --cities")
    for a, la in enumerate(lats):
        for b, lo in enumerate(lons):
            x, y = (float(v) for v in town.local(la, lo))
            r = scene.rng_for(opts.seed, 12, town.city, town.index, a, b)
            img = scene.aerial(town, x, y, extent, aerial_px, diff, r)
            path = f"{town.name}/satellite/{names[a][b]}"
            scene.save(root / path, img, 100)
            rows.append(location_row(town, path, x, y, "all", "reference", "aerial", None))
    return rows
