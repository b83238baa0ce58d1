"""Geometric augmentations that keep a query and its reference consistent.

Panoramas (view "ground") and polar aerials share one azimuth convention: column j
faces heading 180 + 360 j / W (north at the centre column, clockwise to the right), see
geobench/geometry/polar.py. A mirror of the world (east <-> west) therefore maps column
j to (W - j) mod W in both, and a counter-clockwise rotation of the aerial by k·90°
(np.rot90) brings what was east to the top, i.e. rolls both strips left by k·W/4.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRIP_VIEWS = ("ground", "polar")  # azimuth along the width


def mirror(img: np.ndarray, view: str) -> np.ndarray:
    """Horizontal mirror of the scene (east <-> west) in `view`'s own geometry."""
    flipped = img[:, ::-1]
    if view in STRIP_VIEWS:
        # Column j -> (W - j) mod W keeps north (column W/2) and south (column 0) fixed.
        flipped = np.roll(flipped, 1, axis=1)
    return np.ascontiguousarray(flipped)


def rotate(img: np.ndarray, view: str, k: int) -> np.ndarray:
    """Rotate the scene counter-clockwise by k·90° as seen from above."""
    if k % 4 == 0:
        return img
    if view in STRIP_VIEWS:
        shift = int(round(k * img.shape[1] / 4))
        return np.ascontiguousarray(np.roll(img, -shift, axis=1))
    return np.ascontiguousarray(np.rot90(img, k))


@dataclass(frozen=True)
class PairAugment:
    """The random choices for one (query, reference) pair, drawn from its own seed."""

    flip: bool
    k: int  # quarter turns applied to the reference (and the query when both are strips)

    @classmethod
    def draw(cls, seed: int, hflip_p: float, rotate_p: float) -> PairAugment:
        rng = np.random.default_rng(seed)
        flip = bool(rng.random() < hflip_p)
        k = int(rng.integers(1, 4)) if rng.random() < rotate_p else 0
        return cls(flip, k)


def rotation_applies(query_view: str, reference_view: str) -> str:
    """How a reference rotation affects the query: 'both', 'reference' or 'none'.

    A panorama query turns with the aerial; a drone view has no fixed heading, so the
    satellite turns alone (LRFR); perspective or street crops with unknown field of
    view cannot follow a rotation, so none is applied.
    """
    if reference_view not in ("aerial", "polar"):
        return "none"
    if query_view == "ground":
        return "both"
    if query_view == "drone":
        return "reference"
    return "none"


def apply_pair(query: np.ndarray, reference: np.ndarray, query_view: str, reference_view: str,
               aug: PairAugment) -> tuple[np.ndarray, np.ndarray]:
    if aug.flip:
        query, reference = mirror(query, query_view), mirror(reference, reference_view)
    mode = rotation_applies(query_view, reference_view)
    if aug.k and mode != "none":
        reference = rotate(reference, reference_view, aug.k)
        if mode == "both":
            query = rotate(query, query_view, aug.k)
    return query, reference
