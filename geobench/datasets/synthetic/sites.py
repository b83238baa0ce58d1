"""Where the images go: districts sized to hold the requested locations (plans only, no pixels).

A layout asks `plan_city` for n locations in one city and supplies `pick(site, k, rng)`,
which chooses up to k locations in a planned district. A district is first sized from an
area per location; one that holds fewer than asked is planned again larger (up to the
raster limit), and whatever still does not fit goes to further districts, so any count
fits any preset. Everything is seeded by (seed, purpose, city, area, district, attempt).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from geobench.datasets.synthetic.difficulty import Difficulty
from geobench.datasets.synthetic.options import SyntheticOptions
from geobench.datasets.synthetic.town import CityStyle, Plan, city_style, plan_district
from geobench.errors import UsageError
from geobench.geometry import gps

MAX_CELLS = 14_000_000   # one district's raster (about 0.25 GB with both captures)
CITY_STEP_DEG = 0.6
MIN_INNER = 220.0        # at least two blocks across, so every district has inner streets
GROW_TRIES = 5
TOWN_NAMES = ("Alderton", "Brookfield", "Cedarvale", "Dunmore", "Elmstead", "Fairhaven",
              "Glenwood", "Harwick", "Ivybridge", "Juniper", "Kingsford", "Larkspur")


def city_name(k: int) -> str:
    base = TOWN_NAMES[k % len(TOWN_NAMES)]
    return base if k < len(TOWN_NAMES) else base + "abcdefghijklmnopqrstuvwxyz"[
        (k // len(TOWN_NAMES) - 1) % 26]


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, keys)]))


@dataclass
class Site:
    """A planned district, its place on Earth and the locations a layout picked in it."""

    city: int
    area: int                   # disjoint part of the city (VG splits), 20 km apart
    index: int                  # district number within (city, area)
    name: str
    style: CityStyle
    plan: Plan
    east0: float                # district frame origin in the city tangent plane
    north0: float
    lat0: float                 # the city's tangent point
    lon0: float
    picked: Any = None          # whatever the layout's pick returned
    count: int = 0              # locations picked

    @property
    def size(self) -> tuple[float, float]:
        return self.plan.size

    def latlon(self, x, y):
        lat, lon, _ = gps.enu_to_latlon(np.asarray(x) + self.east0, np.asarray(y) + self.north0,
                                        0.0, self.lat0, self.lon0)
        return lat, lon

    def local(self, lat, lon):
        e, n, _ = gps.latlon_to_enu(lat, lon, self.lat0, self.lon0)
        return np.asarray(e) - self.east0, np.asarray(n) - self.north0


Pick = Callable[[Site, int, np.random.Generator], tuple[Any, int]]


def street_area(spacing: float) -> Callable[[CityStyle], float]:
    """Town area (m^2) per street location >= spacing apart, for a city's block size B.

    Measured with town.street_points: along a road the gaps average 1.25 spacing, and
    crossings cost more as spacing nears B; beyond B about 1.65 spacing^2 per location.
    A 10 % margin keeps first plans from falling just short.
    """
    def per_item(style: CityStyle) -> float:
        b = style.block_mean
        return 1.1 * max(spacing * (1.4 + 1.5 * spacing / b) * b / 2, 1.65 * spacing**2)
    return per_item


def _first_size(left: int, per_item: float, margin: float, max_side: float) -> tuple[int, float]:
    """(locations, side m) of the next district: all that is left, or an equal share of
    the fewest largest-possible districts that hold it."""
    fits = (max_side - 2 * margin) ** 2 / per_item
    count = max(1, math.ceil(left / fits))
    k = math.ceil(left / count)
    side = max(MIN_INNER, math.sqrt(k * per_item)) + 2 * margin
    return k, min(side, max_side)


def plan_city(opts: SyntheticOptions, diff: Difficulty, city: int, n: int,
              per_item: float | Callable[[CityStyle], float], margin: float, pick: Pick,
              area: int = 0) -> list[Site]:
    """Districts of one city holding n picked locations in all (cheap: no rasters).

    `per_item`: first guess of the town area per location (m^2), or a function of the
    city's style giving it; `margin`: metres kept free along the district's edges.
    """
    res = opts.raster_res
    max_side = math.sqrt(MAX_CELLS) * res
    if max_side - 2 * margin < MIN_INNER:
        raise UsageError(f"the aerial footprint ({2 * margin:.0f} m) does not fit a district at "
                         f"{res} m cells; lower --resolution or the aerial size")
    style = city_style(city_name(city), rng_for(opts.seed, 1, city), diff.variety)
    per_item = float(per_item(style) if callable(per_item) else per_item)
    lon0 = ((opts.origin_lon + 180 + CITY_STEP_DEG * city) % 360) - 180
    sites: list[Site] = []
    left, north = int(n), 20_000.0 * area
    while left > 0:
        d = len(sites)
        k, side = _first_size(left, per_item, margin, max_side)
        for attempt in range(GROW_TRIES):
            plan = plan_district(style, (side, side), rng_for(opts.seed, 2, city, area, d, attempt))
            site = Site(city, area, d, style.name, style, plan, -side / 2, north,
                        opts.origin_lat, lon0)
            picked, got = pick(site, k, rng_for(opts.seed, 4, city, area, d, attempt))
            if got >= k or side >= max_side:
                break
            side = min(max_side, side * math.sqrt(1.2 * k / max(got, 1)))
        if got == 0:
            raise UsageError(f"no location of district {style.name}/{d} ({side:.0f} m) lies "
                             f"{diff.spacing_m} m from the others; lower the difficulty's "
                             f"spacing_m")
        site.picked, site.count = picked, got
        sites.append(site)
        left -= got
        north += side + 100.0
        if got < k:   # size the remaining districts as this one turned out
            per_item *= 1.1 * k / got
    return sites
