"""RandAugment as MixVPR's GSV-Cities loader applies it (torchvision's RandAugment on PIL
images: num_ops 3, magnitude 9 of 31 bins, bilinear, black fill), written with numpy/cv2.

Each of `num_ops` rounds picks one of 14 operations uniformly and, for the signed ones, a
random sign. The operations follow PIL's definitions (ImageEnhance blends, ImageOps'
posterize / solarize / autocontrast / equalize), which is what torchvision calls on PIL.
"""
from __future__ import annotations

import math

import numpy as np

OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
       "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")
SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
          "Contrast", "Sharpness"}


def magnitude(op: str, level: int, bins: int, height: int, width: int) -> float:
    """torchvision's magnitude table (_augmentation_space) at `level` of `bins`."""
    frac = level / (bins - 1)
    top = {"ShearX": 0.3, "ShearY": 0.3, "TranslateX": 150.0 / 331.0 * width,
           "TranslateY": 150.0 / 331.0 * height, "Rotate": 30.0, "Brightness": 0.9, "Color": 0.9,
           "Contrast": 0.9, "Sharpness": 0.9}
    if op in top:
        return top[op] * frac
    if op == "Posterize":
        return float(8 - int(round(level / ((bins - 1) / 4))))
    if op == "Solarize":
        return float(np.linspace(255.0, 0.0, bins, dtype=np.float32)[level])
    return 0.0


def _gray(img: np.ndarray) -> np.ndarray:
    """PIL's convert('L'): ITU-R 601-2 luma, L = (R 299 + G 587 + B 114) / 1000, rounded."""
    r, g, b = (img[..., i].astype(np.int32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def _blend(degenerate: np.ndarray, img: np.ndarray, factor: float) -> np.ndarray:
    """PIL's Image.blend(degenerate, img, factor): rounded and clipped to 0..255."""
    out = degenerate.astype(np.float32) + np.float32(factor) * (img.astype(np.float32) - degenerate)
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def _affine(img: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Warp with `matrix` mapping output pixel (x, y) to input coordinates (PIL's
    Image.transform AFFINE, pixel centres at +0.5), bilinear, black outside."""
    import cv2

    a, b, c, d, e, f = matrix.ravel()[:6]
    # PIL samples input (a(x+.5) + b(y+.5) + c - .5, ...) for output pixel (x, y).
    m = np.array([[a, b, c + 0.5 * (a + b) - 0.5], [d, e, f + 0.5 * (d + e) - 0.5]], np.float64)
    h, w = img.shape[:2]
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def _inverse_affine(center: tuple[float, float], angle: float, translate: tuple[float, float],
                    shear: tuple[float, float]) -> np.ndarray:
    """torchvision's _get_inverse_affine_matrix (scale 1): output -> input coordinates."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [d, -b, 0.0, -c, a, 0.0]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty)
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty)
    m[2] += cx
    m[5] += cy
    return np.array(m)


def _sharpness(img: np.ndarray, factor: float) -> np.ndarray:
    """PIL ImageEnhance.Sharpness: blend with the SMOOTH filter, border pixels kept."""
    import cv2

    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13
    smooth = np.clip(np.floor(cv2.filter2D(img.astype(np.float32), -1, kernel) + 0.5), 0, 255)
    degenerate = img.copy()
    degenerate[1:-1, 1:-1] = smooth[1:-1, 1:-1].astype(np.uint8)
    return _blend(degenerate, img, factor)


def _autocontrast(img: np.ndarray) -> np.ndarray:
    """PIL ImageOps.autocontrast (cutoff 0) per channel."""
    out = img.copy()
    for ch in range(img.shape[2]):
        lo, hi = int(img[..., ch].min()), int(img[..., ch].max())
        if hi <= lo:
            continue
        scale = 255.0 / (hi - lo)
        lut = np.clip(np.arange(256) * scale - lo * scale, 0, 255).astype(np.uint8)
        out[..., ch] = lut[img[..., ch]]
    return out


def _equalize(img: np.ndarray) -> np.ndarray:
    """PIL ImageOps.equalize per channel."""
    out = img.copy()
    for ch in range(img.shape[2]):
        hist = np.bincount(img[..., ch].ravel(), minlength=256)
        used = hist[hist > 0]
        step = (int(hist.sum()) - int(used[-1])) // 255 if len(used) else 0
        if not step:
            continue
        n = step // 2 + np.concatenate([[0], np.cumsum(hist)[:-1]])
        lut = np.minimum(n // step, 255).astype(np.uint8)
        out[..., ch] = lut[img[..., ch]]
    return out


def apply_op(img: np.ndarray, op: str, mag: float) -> np.ndarray:
    """One RandAugment operation at signed magnitude `mag` on an RGB uint8 image."""
    h, w = img.shape[:2]
    if op == "Identity":
        return img
    if op in ("ShearX", "ShearY"):
        deg = math.degrees(math.atan(mag))
        shear = (deg, 0.0) if op == "ShearX" else (0.0, deg)
        return _affine(img, _inverse_affine((0.0, 0.0), 0.0, (0.0, 0.0), shear))
    if op in ("TranslateX", "TranslateY"):
        t = (int(mag), 0.0) if op == "TranslateX" else (0.0, int(mag))
        return _affine(img, _inverse_affine((w * 0.5, h * 0.5), 0.0, t, (0.0, 0.0)))
    if op == "Rotate":
        return _affine(img, _inverse_affine((w * 0.5, h * 0.5), -mag, (0.0, 0.0), (0.0, 0.0)))
    if op == "Brightness":
        return _blend(np.zeros_like(img), img, 1.0 + mag)
    if op == "Color":
        return _blend(np.repeat(_gray(img)[..., None], 3, axis=2), img, 1.0 + mag)
    if op == "Contrast":
        mean = int(_gray(img).mean() + 0.5)
        return _blend(np.full_like(img, mean), img, 1.0 + mag)
    if op == "Sharpness":
        return _sharpness(img, 1.0 + mag)
    if op == "Posterize":
        return img & np.uint8((0xFF << (8 - int(mag))) & 0xFF)
    if op == "Solarize":
        return np.where(img >= mag, 255 - img, img).astype(np.uint8)
    if op == "AutoContrast":
        return _autocontrast(img)
    if op == "Equalize":
        return _equalize(img)
    raise ValueError(f"unknown RandAugment operation {op!r}")


def rand_augment(img: np.ndarray, rng: np.random.Generator, num_ops: int = 3, level: int = 9,
                 bins: int = 31) -> np.ndarray:
    h, w = img.shape[:2]
    for _ in range(num_ops):
        op = OPS[int(rng.integers(len(OPS)))]
        mag = magnitude(op, level, bins, h, w)
        if op in SIGNED and rng.integers(2):
            mag = -mag
        img = apply_op(img, op, mag)
    return img
