"""Damaged JPEG files as they occur: cut short by an interrupted copy, or with bytes flipped
mid-stream. Both are files OpenCV still turns into a picture (grey or striped) while
libjpeg prints a warning to the raw stderr."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def jpeg_bytes(h: int = 32, w: int = 128, seed: int = 0) -> bytes:
    import cv2

    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (5, 5), 2)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def truncated(data: bytes) -> bytes:
    """The first third of the file (an interrupted copy)."""
    return data[: len(data) // 3]


def flipped(data: bytes) -> bytes:
    """Ten bytes inverted in the middle of the entropy-coded data."""
    out = bytearray(data)
    mid = len(out) // 2
    for i in range(mid, mid + 10):
        out[i] ^= 0xFF
    return bytes(out)


def damage(path: Path, how: str) -> Path:
    """Replace `path` by a damaged JPEG of the same name ("truncated" or "flipped")."""
    good = jpeg_bytes()
    path.write_bytes(truncated(good) if how == "truncated" else flipped(good))
    return path
