"""Difficulty knobs of the synthetic world and the named presets easy / standard / hard.

Every knob is continuous so the presets can be calibrated by measurement later (the
calibration command lives with the training engine). Appearance-change knobs (lighting,
season, repaint, rebuild, vehicles) make the town at a later time than the ground views:
CVUSA / VIGOR aerials show it from above, VG queries from the street (the VG database
shows the town as built); the ground-view knobs act on the ground images only.
"""
from __future__ import annotations

import dataclasses
import functools
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from geobench.errors import UsageError


@dataclass(frozen=True)
class Difficulty:
    """Continuous difficulty knobs; 0 means 'identical / clean' for the change knobs."""

    lighting: float = 0.0          # 0: same sun and exposure in both views; 1: independent
    season: float = 0.0            # 0: same vegetation colours; 1: full season swing in aerial
    repaint: float = 0.0           # probability a building has other colours in the aerial
    rebuild: float = 0.0           # probability a lot's building is added/removed between views
    vehicles: float = 0.0          # parked vehicles per 10 m of kerb, independent per view
    occluders: float = 0.0         # expected near-camera occluders (poles, people, trucks) per pano
    noise: float = 0.0             # sensor noise sigma, in 8-bit grey levels
    jpeg_quality: int = 95         # JPEG quality of written images (lower: more artefacts)
    fov_deg: float = 360.0         # horizontal field of view kept in ground panoramas
    heading_jitter_deg: float = 0.0  # ground heading uniform in ±jitter/2 (360: unknown)
    offset_m: float = 0.0          # aerial centre displaced up to this far from the camera
    spacing_m: float = 30.0        # minimum distance between two locations (denser: harder)
    variety: float = 1.0           # building colour/height diversity inside a city (low: harder)
    test_pairs: int = 500          # gallery size used when the caller gives no test_pairs

    def __post_init__(self) -> None:
        unit = ("lighting", "season", "repaint", "rebuild", "variety")
        for name in unit:
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise UsageError(f"difficulty {name}={value!r} must lie in [0, 1]")
        for name in ("vehicles", "occluders", "noise", "offset_m", "heading_jitter_deg"):
            if float(getattr(self, name)) < 0:
                raise UsageError(f"difficulty {name}={getattr(self, name)!r} must be >= 0")
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise UsageError(f"difficulty jpeg_quality={self.jpeg_quality!r} must lie in 1..100")
        if not 10.0 <= float(self.fov_deg) <= 360.0:
            raise UsageError(f"difficulty fov_deg={self.fov_deg!r} must lie in [10, 360]")
        if float(self.heading_jitter_deg) > 360.0:
            raise UsageError(f"difficulty heading_jitter_deg={self.heading_jitter_deg!r} "
                             f"must lie in [0, 360]")
        if not 2.0 <= float(self.spacing_m) <= 500.0:
            raise UsageError(f"difficulty spacing_m={self.spacing_m!r} must lie in [2, 500]")
        if int(self.test_pairs) < 1:
            raise UsageError(f"difficulty test_pairs={self.test_pairs!r} must be >= 1")


# Calibrated by measurement (benchmarks/calibrate.py -> benchmarks/CALIBRATION.md): safa tiny,
# batch 32, lr 1e-3, 600 train / 200 test pairs, 16 epochs gave R@1 65.5 % (R@5 93 %) on easy,
# 48 % on standard (softened from lighting .5 / season .4 / 30 m spacing ...) and 1.5 % on
# hard. Re-run that command after changing any number here.
PRESETS: dict[str, Difficulty] = {
    "easy": Difficulty(lighting=0.1, season=0.0, repaint=0.0, rebuild=0.0, vehicles=0.2,
                       occluders=0.0, noise=1.0, jpeg_quality=92, offset_m=0.0,
                       spacing_m=60.0, variety=1.0, test_pairs=200),
    "standard": Difficulty(lighting=0.35, season=0.25, repaint=0.1, rebuild=0.05, vehicles=0.5,
                           occluders=0.5, noise=2.0, jpeg_quality=90, offset_m=1.0,
                           spacing_m=40.0, variety=0.85, test_pairs=500),
    "hard": Difficulty(lighting=0.9, season=0.8, repaint=0.35, rebuild=0.25, vehicles=1.5,
                       occluders=3.0, noise=6.0, jpeg_quality=70, fov_deg=180.0,
                       heading_jitter_deg=360.0, offset_m=8.0, spacing_m=15.0, variety=0.35,
                       test_pairs=1000),
}


def resolve_difficulty(preset: str, overrides: Mapping[str, Any] | None = None) -> Difficulty:
    """The preset's knobs with `overrides` applied (unknown names fail with the list)."""
    if preset not in PRESETS:
        raise UsageError(f"unknown synthetic preset {preset!r}; choose one of "
                         f"{', '.join(PRESETS)}")
    base = PRESETS[preset]
    overrides = dict(overrides or {})
    known = {f.name for f in dataclasses.fields(Difficulty)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UsageError(f"unknown difficulty knob(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(known))}")
    return dataclasses.replace(base, **overrides)


# ---- image-space appearance operations (each takes an explicit RNG) -------------------

def photometric(img: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Global exposure, contrast and white-balance change scaled by `amount` (0: none)."""
    if amount <= 0:
        return img
    import cv2

    gain = np.exp(rng.normal(0.0, 0.25 * amount))
    contrast = np.exp(rng.normal(0.0, 0.15 * amount))
    tint = 1.0 + rng.normal(0.0, 0.06 * amount, size=3)
    mean = float(img.mean())
    # ((x - mean) * contrast + mean) * gain * tint, per channel, in one saturating pass
    scale = gain * tint * contrast
    shift = gain * tint * mean * (1.0 - contrast)
    if img.ndim == 2:   # grey: the mean of the channel changes
        out = img * np.float32(scale.mean()) + np.float32(shift.mean())
        return np.clip(out, 0, 255).round().astype(np.uint8)
    m = np.hstack([np.diag(scale), shift[:, None]]).astype(np.float32)
    return cv2.transform(img, m)


def sensor_noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    import cv2

    # Gaussian by table look-up of 16 random bits: 3x cheaper than standard_normal
    noise = _normal_table()[np.frombuffer(rng.bytes(2 * img.size), np.uint16)]
    noise *= np.float32(sigma)
    return cv2.add(img, noise.reshape(img.shape), dtype=cv2.CV_8U)   # saturating, rounded


@functools.lru_cache(maxsize=1)
def _normal_table() -> np.ndarray:
    """Standard normal quantiles at the 65536 mid-points of (0, 1)."""
    inv = statistics.NormalDist().inv_cdf
    return np.array([inv((k + 0.5) / 65536) for k in range(65536)], np.float32)


def occlude(pano: np.ndarray, horizon_row: float, rng: np.random.Generator,
            expected: float) -> np.ndarray:
    """Paint near-camera occluders (poles, pedestrians, passing trucks) into a panorama.

    They stand on the street right beside the camera, so they are drawn in image space:
    a thing d metres away and w metres wide spans w/d radians of azimuth.
    """
    count = int(rng.poisson(expected)) if expected > 0 else 0
    if count == 0:
        return pano
    out = pano.copy()
    H, W = out.shape[:2]
    px_per_rad = W / (2 * np.pi)
    for _ in range(count):
        kind = rng.choice(3, p=[0.45, 0.35, 0.2])
        dist = rng.uniform(1.5, 6.0)
        width, height = [(0.25, 6.0), (0.6, 1.75), (2.5, 3.6)][kind]
        colour = rng.integers(20, 230, size=3) if kind else np.full(3, rng.integers(60, 140))
        half = max(1, int(round(width / dist * px_per_rad / 2)))
        centre = int(rng.integers(0, W))
        top = int(round(horizon_row - np.arctan2(height - 2.0, dist) * px_per_rad))
        cols = np.arange(centre - half, centre + half + 1) % W
        shade = 0.8 + 0.4 * np.linspace(0, 1, cols.size)[:, None]
        block = np.clip(colour[None, :] * shade, 0, 255).astype(np.uint8)
        out[max(0, top):, cols] = block[None, :, :]
    return out


def limit_view(pano: np.ndarray, heading_deg: float, fov_deg: float) -> tuple[np.ndarray, float]:
    """Roll a north-centred panorama so its centre column faces `heading_deg`, keep `fov_deg`.

    Column c of the result faces heading_deg + 360*(c - W/2)/W degrees (clockwise), so a
    full-FOV, zero-heading call returns the input unchanged. Returns the image and the
    heading it really faces (rounded to whole columns).
    """
    W = pano.shape[1]
    shift = int(round(heading_deg / 360.0 * W))
    rolled = np.roll(pano, -shift, axis=1) if shift % W else pano
    keep = int(round(W * fov_deg / 360.0))
    actual = (shift * 360.0 / W + 180.0) % 360.0 - 180.0
    if keep >= W:
        return rolled, actual
    left = W // 2 - keep // 2
    return np.ascontiguousarray(rolled[:, left:left + keep]), actual
