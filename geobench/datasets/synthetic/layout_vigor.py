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

from pathlib import Path

import numpy as np

from geobench.datasets.synthetic import scene
from geobench.datasets.synthetic.difficulty import Difficulty
from geobench.datasets.synthetic.layouts import location_row, split_counts
from geobench.datasets.synthetic.options import AERIAL_EXTENT_M, SyntheticOptions
from geobench.datasets.synthetic.pool import Job, run_tasks
from geobench.datasets.synthetic.sites import Site, plan_city, rng_for
from geobench.datasets.synthetic.town import street_points
from geobench.fileio import write_text

_ID_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


def sat_name(lat: float, lon: float) -> str:
    return f"satellite_{float(lat)!r}_{float(lon)!r}.png"


def _vigor_pick(opts: SyntheticOptions, diff: Difficulty):
    """A `pick` for sites.plan_city: the district's satellite grid and up to k panoramas."""
    aerial_px = opts.sizes[0]
    extent = AERIAL_EXTENT_M["vigor"]
    stride, half = extent / 2, aerial_px / 2

    def pick(site, k: int, rng: np.random.Generator):
        side = site.size[0]
        # grid in lat/lon, steps of half an image measured at the district centre
        lat_c, lon_c = (float(v) for v in site.latlon(side / 2, side / 2))
        lat_n, _ = site.latlon(side / 2, side / 2 + stride)
        _, lon_e = site.latlon(side / 2 + stride, side / 2)
        dlat, dlon = float(lat_n) - lat_c, float(lon_e) - lon_c
        n_half = int((side / 2 - extent / 2 - 1) // stride)
        if n_half < 2:
            return None, 0
        steps = np.arange(-n_half, n_half + 1)
        lats, lons = lat_c + steps * dlat, lon_c + steps * dlon   # row 0 = southernmost
        names = [[sat_name(la, lo) for lo in lons] for la in lats]
        inner = (n_half - 1) * stride      # every panorama needs all four covering tiles
        bounds = (side / 2 - inner, side / 2 - inner, side / 2 + inner, side / 2 + inner)
        cands = street_points(site.plan, site.style, None, rng, bounds,
                              min(diff.spacing_m, 6.0))
        c_lat, c_lon = site.latlon(cands[:, 0], cands[:, 1])
        use = np.zeros((len(lats), len(lons)), np.int64)
        panos = []
        for lat, lon in zip(np.atleast_1d(c_lat).tolist(), np.atleast_1d(c_lon).tolist(),
                            strict=True):
            if len(panos) == k:
                break
            lat, lon = round(lat, 6), round(lon, 6)
            i = int(round((lat - lat_c) / dlat)) + n_half
            jj = int(round((lon - lon_c) / dlon)) + n_half
            if not (1 <= i < len(lats) - 1 and 1 <= jj < len(lons) - 1) or use[i, jj] >= 2:
                continue
            use[i, jj] += 1
            si = 1 if lat >= lats[i] else -1
            sj = 1 if lon >= lons[jj] else -1
            fields = []
            for a, b in [(i, jj), (i, jj + sj), (i + si, jj), (i + si, jj + sj)]:
                d0 = round((lats[a] - lat) / dlat * half)
                d1 = round((lons[b] - lon) / dlon * half)
                fields.append((d0 * d0 + d1 * d1, names[a][b], d0, d1))
            panos.append((lat, lon, fields[:1] + sorted(fields[1:])))
        return {"lats": lats, "lons": lons, "names": names, "panos": panos}, len(panos)
    return pick


def plan_vigor(opts: SyntheticOptions, diff: Difficulty, total: int) -> list[Site]:
    stride = AERIAL_EXTENT_M["vigor"] / 2
    # about 1.1 panoramas per grid cell: two at most, and streets miss some cells
    return [site for city, n_city in enumerate(split_counts(total, opts.cities)) if n_city
            for site in plan_city(opts, diff, city, n_city, stride**2 / 1.1,
                                  AERIAL_EXTENT_M["vigor"], _vigor_pick(opts, diff))]


def write_vigor(opts: SyntheticOptions, diff: Difficulty, root: Path, n_test: int) -> list[dict]:
    total = opts.pairs + n_test
    rng = rng_for(opts.seed, 9)
    test = set(rng.choice(total, n_test, replace=False).tolist())
    sites = plan_vigor(opts, diff, total)
    tasks, idx = [], 0
    for s, site in enumerate(sites):
        grid = site.picked
        for lat, lon, fields in grid["panos"]:
            tasks.append((s, ("pano", idx, lat, lon, fields, idx in test)))
            idx += 1
        tasks += [(s, ("sat", a, b, float(la), float(lo), grid["names"][a][b]))
                  for a, la in enumerate(grid["lats"]) for b, lo in enumerate(grid["lons"])]
    job = Job(opts, diff, root, dict(enumerate(sites)))
    done = run_tasks(job, tasks, vigor_image, opts.workers, "synthetic vigor images")
    rows: list[dict] = []
    for city in sorted({site.city for site in sites}):
        labels: dict[str, list[str]] = {"train": [], "test": []}
        sats: list[str] = []
        for site in sites:
            if site.city == city:
                for row_names in site.picked["names"][::-1]:  # north to south, west to east
                    sats.extend(row_names)
        for (s, _), (split, line, row) in zip(tasks, done, strict=True):
            if sites[s].city == city:
                if line:
                    labels[split].append(line)
                rows.append(row)
        split_dir = root / "splits" / scene.city_name(city)
        tail = "" if city % 2 else "\n"   # VIGOR's lists differ in the final newline
        write_text(split_dir / "satellite_list.txt", "\n".join(sats) + tail)
        write_text(split_dir / "same_area_balanced_train.txt", "".join(labels["train"]))
        write_text(split_dir / "same_area_balanced_test.txt", "".join(labels["test"]))
        write_text(split_dir / "pano_label_balanced.txt",
                   "".join(sorted(labels["train"] + labels["test"], key=_order)))
    return rows


def _order(line: str) -> str:
    return line.split(",", 1)[0]


def vigor_image(town: scene.Town, payload, job: Job):
    """One panorama or one satellite tile; runs in any worker. Returns (split, label, row)."""
    opts, diff, root = job.opts, job.diff, job.root
    aerial_px, (H, W) = opts.sizes
    if payload[0] == "sat":
        _, a, b, la, lo, name = payload
        x, y = (float(v) for v in town.local(la, lo))
        r = rng_for(opts.seed, 12, town.city, town.index, a, b)
        img = scene.aerial(town, x, y, AERIAL_EXTENT_M["vigor"], aerial_px, diff, r)
        path = f"{town.name}/satellite/{name}"
        scene.save(root / path, img, 100)
        return "all", "", location_row(town, path, x, y, "all", "reference", "aerial", None)
    _, idx, lat, lon, fields, test = payload
    r = rng_for(opts.seed, 11, idx)
    pano_id = "".join(r.choice(_ID_CHARS, 22))
    fname = f"{pano_id},{lat:.6f},{lon:.6f},.jpg"
    px, py = (float(v) for v in town.local(lat, lon))
    heading = r.uniform(-0.5, 0.5) * diff.heading_jitter_deg
    pano, _, real = scene.ground_pano(town, px, py, H, W, scene.horizon_for("vigor"), diff,
                                      r, heading)
    scene.save(root / town.name / "panorama" / fname, pano, diff.jpeg_quality)
    split = "test" if test else "train"
    line = fname + "".join(f" {n} {float(d0):.1f} {float(d1):.1f}" for _, n, d0, d1 in fields)
    return split, line + "\n", location_row(town, f"{town.name}/panorama/{fname}", px, py,
                                             split, "query", "ground", real,
                                             positive=fields[0][1])
