"""Towns placed on the globe, and the cameras the layouts call (difficulty applied).

Sites (planned districts, see sites.py) are built into Towns here. Every random draw comes
from a generator seeded by (seed, purpose, city, district, image ...), never from the order
in which images are rendered, so the same options give identical bytes in any process.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geobench.datasets.synthetic.difficulty import (
    Difficulty,
    limit_view,
    occlude,
    photometric,
    sensor_noise,
)
from geobench.datasets.synthetic.options import HORIZON, SyntheticOptions
from geobench.datasets.synthetic.render import cast, pano_rays, pinhole_rays, render_aerial
from geobench.datasets.synthetic.sites import Site, city_name, rng_for  # noqa: F401
from geobench.datasets.synthetic.world import District, build_district
from geobench.fileio import atomic_path


@dataclass
class Town:
    """A planned site with its district built (rasters for the cameras)."""

    site: Site
    district: District

    @property
    def name(self) -> str:
        return self.site.name

    @property
    def index(self) -> int:
        return self.site.index

    @property
    def city(self) -> int:
        return self.site.city

    @property
    def size(self) -> tuple[float, float]:
        return self.site.size

    def latlon(self, x, y):
        return self.site.latlon(x, y)

    def local(self, lat, lon):
        return self.site.local(lat, lon)


def build_town(site: Site, opts: SyntheticOptions, diff: Difficulty) -> Town:
    """Rasterise a site; VG gets the later time as a street-level capture, not an aerial."""
    rng = rng_for(opts.seed, 13, site.city, site.area, site.index)
    vg = opts.layout == "vg"
    later = vg and max(diff.lighting, diff.season, diff.repaint, diff.rebuild,
                        diff.vehicles) > 0
    district = build_district(site.style, site.plan, opts.raster_res, diff, rng,
                              opts.camera_height_m, aerial=not vg, later=later)
    return Town(site, district)


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
    """Pinhole view; `changed`: taken at the later time (the town as the aerial-time
    knobs season / repaint / rebuild / vehicles / lighting leave it), else as built."""
    az, tan_el = pinhole_rays(H, W, hfov, heading)
    d = town.district
    rgb, _ = cast(d.later if changed and d.later is not None else d.ground, x, y, az, tan_el, rng)
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
