"""Sample4Geo's (and LRFR's) photometric and dropout augmentations, written for geobench.

The official pipelines (Skyy93/Sample4Geo sample4geo/transforms.py, WenjianGan/LRFR
datasets/university.py) are albumentations 1.3 compositions; each image gets, in order:
JPEG re-compression (quality 90-100, p 0.5), ColorJitter(0.15, 0.15, 0.15, 0.15, p 0.5),
one of AdvancedBlur / Sharpen (p 0.3) and one of GridDropout / CoarseDropout (10-25 holes
of 0.1-0.2 x the image height, p 0.3). The operations below take their parameters
explicitly (so tests can compare them with the official functions) and `draw_*` draws
those parameters with albumentations' default ranges from a numpy Generator.
None of them moves a pixel: the geometry of a pair is the business of augment.py.
"""
from __future__ import annotations

from typing import Any

import numpy as np


# --- the operations ----------------------------------------------------------------
def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as JPEG at `quality` (the array as given, as albumentations does)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", img, (int(cv2.IMWRITE_JPEG_QUALITY), int(quality)))
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else img


def brightness(img: np.ndarray, factor: float) -> np.ndarray:
    lut = np.clip(np.arange(256) * factor, 0, 255).astype(np.uint8)
    return lut[img]


def contrast(img: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    mean = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).mean()
    lut = np.clip(np.arange(256) * factor + mean * (1 - factor), 0, 255).astype(np.uint8)
    return lut[img]


def saturation(img: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    gray = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(img, factor, gray, 1 - factor, 0)


def hue(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue by `shift` turns (OpenCV's 8-bit hue runs over 0..179)."""
    import cv2

    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    lut = np.mod(np.arange(256, dtype=np.int16) + 180 * shift, 180).astype(np.uint8)
    hsv[..., 0] = lut[hsv[..., 0]]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


COLOR_OPS = (brightness, contrast, saturation, hue)


def color_jitter(img: np.ndarray, factors: tuple[float, float, float, float],
                 order: tuple[int, ...]) -> np.ndarray:
    """Brightness, contrast, saturation factors and hue shift, applied in `order`."""
    for i in order:
        img = COLOR_OPS[i](img, factors[i])
    return img


def convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.filter2D(img, -1, kernel.astype(np.float32))


def sharpen_kernel(alpha: float, lightness: float) -> np.ndarray:
    keep = np.zeros((3, 3), np.float32)
    keep[1, 1] = 1
    effect = -np.ones((3, 3), np.float32)
    effect[1, 1] = 8 + lightness
    return (1 - alpha) * keep + alpha * effect


def blur_kernel(ksize: int, sigma_x: float, sigma_y: float, angle: float, beta: float,
                noise: np.ndarray) -> np.ndarray:
    """AdvancedBlur's kernel: a rotated generalised Gaussian times multiplicative noise."""
    ax = np.arange(-ksize // 2 + 1.0, ksize // 2 + 1.0)
    grid = np.stack(np.meshgrid(ax, ax), axis=-1)
    u = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    inv = np.linalg.inv(u @ np.diag([sigma_x ** 2, sigma_y ** 2]) @ u.T)
    kernel = np.exp(-0.5 * np.power(np.sum((grid @ inv) * grid, 2), beta)) * noise
    return kernel.astype(np.float32) / np.sum(kernel)


def grid_holes(height: int, width: int, ratio: float) -> list[tuple[int, int, int, int]]:
    """GridDropout's holes (x1, y1, x2, y2) with its defaults: units of a tenth of the width
    (at least 2 px), holes `ratio` of a unit, no offset - the same grid every time."""
    unit_w = max(2, width // 10)
    unit_h = max(min(unit_w, height), 2)
    hole_w = min(max(int(unit_w * ratio), 1), unit_w - 1)
    hole_h = min(max(int(unit_h * ratio), 1), unit_h - 1)
    holes = []
    for i in range(width // unit_w + 1):
        for j in range(height // unit_h + 1):
            x1, y1 = min(unit_w * i, width), min(unit_h * j, height)
            holes.append((x1, y1, min(x1 + hole_w, width), min(y1 + hole_h, height)))
    return holes


def cut_holes(img: np.ndarray, holes: list[tuple[int, int, int, int]]) -> np.ndarray:
    out = img.copy()
    for x1, y1, x2, y2 in holes:
        out[y1:y2, x1:x2] = 0
    return out


# --- drawing the parameters (albumentations' defaults) --------------------------------
def _randint(rng: np.random.Generator, lo: int, hi: int) -> int:
    """An integer in [lo, hi], both ends included (Python's random.randint)."""
    return int(rng.integers(lo, hi + 1))


def draw_blur_or_sharpen(rng: np.random.Generator) -> np.ndarray:
    """One of AdvancedBlur / Sharpen with equal chance, as OneOf does; the kernel."""
    if rng.random() < 0.5:
        ksize = int(rng.choice([3, 5, 7]))
        sx, sy = rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0)
        angle = np.deg2rad(rng.uniform(-90, 90))
        beta = rng.uniform(0.5, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, 8.0)
        return blur_kernel(ksize, sx, sy, angle, beta, rng.uniform(0.9, 1.1, (ksize, ksize)))
    return sharpen_kernel(rng.uniform(0.2, 0.5), rng.uniform(0.5, 1.0))


def draw_holes(rng: np.random.Generator, height: int, width: int,
               grid_ratio: float) -> list[tuple[int, int, int, int]]:
    """One of GridDropout(grid_ratio) / CoarseDropout (10-25 holes, sides 0.1-0.2 x height)."""
    if rng.random() < 0.5:
        return grid_holes(height, width, grid_ratio)
    lo, hi = int(0.1 * height), int(0.2 * height)
    holes = []
    for _ in range(_randint(rng, 10, 25)):
        h, w = _randint(rng, lo, hi), _randint(rng, lo, hi)
        y1, x1 = _randint(rng, 0, max(height - h, 0)), _randint(rng, 0, max(width - w, 0))
        holes.append((x1, y1, x1 + w, y1 + h))
    return holes


def before_resize(img: np.ndarray, spec: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """JPEG re-compression, which Sample4Geo applies before resizing."""
    if spec["jpeg_p"] and rng.random() < spec["jpeg_p"]:
        img = jpeg(img, _randint(rng, *spec["jpeg_quality"]))
    return img


def photometric(img: np.ndarray, spec: dict[str, Any], role: str, rng: np.random.Generator) -> np.ndarray:
    """The rest of the per-image pipeline at the model's size under the augment options
    `spec` (augment_options.py): Sample4Geo's colour, blur / sharpen and dropout, then
    MixVPR's RandAugment; role 'query' or 'reference' picks the grid-dropout ratio."""
    if spec["color_jitter_p"] and rng.random() < spec["color_jitter_p"]:
        s = spec["color_jitter"]
        factors = (rng.uniform(1 - s, 1 + s), rng.uniform(1 - s, 1 + s), rng.uniform(1 - s, 1 + s),
                   rng.uniform(-s, s))
        img = color_jitter(img, factors, tuple(rng.permutation(4).tolist()))
    if spec["blur_sharpen_p"] and rng.random() < spec["blur_sharpen_p"]:
        img = convolve(img, draw_blur_or_sharpen(rng))
    if spec["dropout_p"] and rng.random() < spec["dropout_p"]:
        img = cut_holes(img, draw_holes(rng, img.shape[0], img.shape[1], spec[f"grid_ratio_{role}"]))
    if spec["randaugment_ops"]:
        from geobench.train.randaugment import rand_augment

        img = rand_augment(img, rng, spec["randaugment_ops"], spec["randaugment_magnitude"])
    return np.ascontiguousarray(img)
