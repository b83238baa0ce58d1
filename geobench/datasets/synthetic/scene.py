"""Towns placed on the globe, and the cameras the layouts call (difficulty applied).

City k is a tangent plane at (origin_lat, origin_lon + 0.6 k); its districts sit side by
side along its north axis. Every random draw comes from a generator seeded by
(seed, purpose, city, district, ...) so the same options give identical bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from geobench.datasets.synthetic.difficulty import (Difficulty, limit_view, occlude,
                                                    photometric, sensor_noise)
from geobench.datasets.synthetic.options import HORIZON, SyntheticOptions
from geobench.datasets.synthetic.render import cast, pano_rays, pinhole_rays, render_aerial
from geobench.datasets.synthetic.town import city_style, plan_district
from geobench.datasets.synthetic.world import District, build_district
from geobench.errors import UsageError
from geobench.fileio import atomic_path
from geobench.geometry import gps

MAX_CELLS = 14_000_000   # one district's raster (about 0.25 GB with both captures)
CITY_STEP_DEG = 0.6
MIN_INNER = 220.0
TOWN_NAMES = ("Alderton", "Brookfield", "Cedarvale", "Dunmore", "Elmstead", "Fairhaven",
              "Glenwood", "Harwick", "Ivybridge", "Juniper", "Kingsford", "Larkspur")


def city_name(k: int) -> str:
    base = TOWN_NAMES[k % len(TOWN_NAMES)]
    return base if k < len(TOWN_NAMES) else base + "abcdefghijklmnopqrstuvwxyz"[
        (k // len(TOWN_NAMES) - 1) % 26]


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, keys)]))


@dataclass
class Town:
    """One built district with its place on Earth."""

    city: int
    name: str
    index: int                  # district number within the city
    district: District
    east0: float                # district frame origin in the city tangent plane
    north0: float
    lat0: float                 # the city's tangent point
    lon0: float

    @property
    def size(self) -> tuple[float, float]:
        return self.district.plan.size

    def latlon(self, x, y):
        lat, lon, _ = gps.enu_to_latlon(np.asarray(x) + self.east0, np.asarray(y) + self.north0,
                                        0.0, self.lat0, self.lon0)
        return lat, lon

    def local(self, lat, lon):
        e, n, _ = gps.latlon_to_enu(lat, lon, self.lat0, self.lon0)
        return np.asarray(e) - self.east0, np.asarray(n) - self.north0


def plan_sizes(n: int, area_per_item: float, margin: float, res: float) -> list[tuple[int, float]]:
    """Split n items into districts: [(items, side metres)], each raster under MAX_CELLS."""
    max_side = math.sqrt(MAX_CELLS) * res
    max_inner = max_side - 2 * margin
    if max_inner < 60:
        raise UsageError(f"the aerial footprint ({2 * margin:.0f} m) does not fit a district at "
                         f"{res} m cells; lower --resolution or the aerial size")
    inner = math.sqrt(max(n, 1) * area_per_item)
    count = max(1, math.ceil((inner / max_inner) ** 2))
    per = [n // count + (1 if i < n % count else 0) for i in range(count)]
    # at least two blocks across, so every district has streets inside its margins
    return [(k, max(MIN_INNER, math.sqrt(max(k, 1) * area_per_item)) + 2 * margin) for k in per]


def towns(opts: SyntheticOptions, diff: Difficulty, city: int, n: int, area_per_item: float,
          margin: float, area: int = 0) -> Iterator[tuple[Town, int]]:
    """Build the districts of one city in turn (one in memory at a time).

    `area` numbers disjoint parts of a city (VG splits), 20 km apart along its north axis.
    """
    style = city_style(city_name(city), rng_for(opts.seed, 1, city), diff.variety)
    north = 20_000.0 * area
    for d, (k, side) in enumerate(plan_sizes(n, area_per_item, margin, opts.raster_res)):
        rng = rng_for(opts.seed, 2, city, area, d)
        plan = plan_district(style, (side, side), rng)
        built = build_district(style, plan, opts.raster_res, diff, rng, opts.camera_height_m)
        yield Town(city, style.name, d, built, -side / 2, north, opts.origin_lat,
                   ((opts.origin_lon + 180 + CITY_STEP_DEG * city) % 360) - 180), k
        north += side + 100.0


def ground_pano(town: Town, x: float, y: float, H: int, W: int, horizon: float,
                diff: Difficulty, rng: np.random.Generator, heading: float = 0.0):
    """Equirectangular panorama; returns (rgb, labels, heading of the centre column)."""
    az, tan_el = pano_rays(H, W, horizon)
    rgb, labels = cast(town.district.ground, x, y, az, tan_el, rng)
    rgb = occlude(rgb, horizon * H, rng, diff.occluders)
    rgb, real = limit_view(rgb, heading, diff.fov_deg)
    labels, _ = limit_view(labels, heading, diff.fov_deg)
    rgb = photometric(rgb, rng, diff.lighting * 0.5)
    return sensor_noise(rgb, rng, diff.noise), labels, real


def ground_crop(town: Town, x: float, y: float, H: int, W: int, hfov: float, heading: float,
                diff: Difficulty, rng: np.random.Generator, changed: bool) -> np.ndarray:
    """Pinhole view; `changed` applies the other-time appearance (lighting) change."""
    az, tan_el = pinhole_rays(H, W, hfov, heading)
    rgb, _ = cast(town.district.ground, x, y, az, tan_el, rng)
    rgb = occlude(rgb, H / 2, rng, diff.occluders * hfov / 360) if changed else rgb
    rgb = photometric(rgb, rng, diff.lighting if changed else diff.lighting * 0.3)
    return sensor_noise(rgb, rng, diff.noise)


def aerial(town: Town, cx: float, cy: float, extent: float, N: int, diff: Difficulty,
           rng: np.random.Generator) -> np.ndarray:
    d = town.district
    img = render_aerial(d.aerial_rgb, d.ground.res, town.size, cx, cy, extent, N)
    img = photometric(img, rng, diff.lighting * 0.5)
    return sensor_noise(img, rng, diff.noise)


def encode(img: np.ndarray, ext: str, quality: int) -> bytes:
    import cv2

    if img.ndim == 3:
        img = img[:, :, ::-1]
    if ext == ".jpg":
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - OpenCV failing on a plain uint8 array
        raise RuntimeError(f"OpenCV could not encode a {ext} image")
    return buf.tobytes()


def save(path: Path, img: np.ndarray, quality: int) -> None:
    # atomic rename without fsync: thousands of images, and the whole raw tree is itself
    # renamed into place only when complete (see generate())
    data = encode(img, path.suffix.lower(), quality)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def horizon_for(layout: str) -> float:
    return HORIZON[layout]
