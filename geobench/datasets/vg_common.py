"""What the visual geo-localization datasets share in either of their layouts (the
VPR-datasets-downloader tree read by `vg`, the raw NetVLAD Pittsburgh release read by
`pitts`): splits, options, the public releases' sizes and counts, where the images/
tree is, and the radius positives.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geobench.datasets.common import find_dir
from geobench.datasets.geo import radius_pairs

SPLITS = ("train", "val", "test")
RAW_MAT_NAMES = ("pitts30k", "pitts250k")  # also read from the raw NetVLAD release


@dataclass(frozen=True)
class VGOptions:
    queries_folder: str = "queries"
    database_folder: str = "database"
    splits: tuple[str, ...] | None = None
    eval_radius_m: float = 25.0
    train_radius_m: float = 10.0
    strict: bool = False
    protocol: str | None = None  # msls: msls_val_740 (default) | msls_val_all (datasets/msls.py)


def find_images_dir(root: Path, name: str) -> Path | None:
    """The images/ folder holding <split>/ subfolders, or None."""
    def has_splits(p: Path) -> bool:
        return any((p / s).is_dir() for s in SPLITS)

    for cand in (root, root / "images", root / name / "images"):
        if cand.is_dir() and has_splits(cand):
            return cand
    for cand in find_dir(root, "images", max_depth=3):
        if has_splits(cand):
            return cand
    return None


def radius_positives(split: str, q_uids: list[str], q_xy: np.ndarray, r_uids: list[str],
                     r_xy: np.ndarray, opts: VGOptions) -> list[dict[str, Any]]:
    """Every reference within the evaluation radius (and, on train, the training radius)."""
    radii = [("positive", opts.eval_radius_m)]
    if split == "train":
        radii.append(("train_positive", opts.train_radius_m))
    links: list[dict[str, Any]] = []
    for kind, radius in radii:
        qi, ri, dist = radius_pairs(q_xy, r_xy, radius)
        links.extend({"split": split, "query": q_uids[q], "reference": r_uids[r], "kind": kind,
                      "distance_m": float(d)} for q, r, d in zip(qi, ri, dist, strict=True))
    return links


def expected_counts(name: str, splits: Any) -> dict[str, int]:
    """The public release's counts for the splits that were indexed."""
    return {k: n for k, n in _COUNTS.get(name, {}).items() if k.split("/")[0] in splits}


SIZES = {"pitts30k": {"street": (480, 640)}, "pitts250k": {"street": (480, 640)},
          "sf_xl": {"street": (512, 512)}}
_COUNTS = {"pitts30k": {"train/reference/street": 10000, "train/query/street": 7416,
                        "val/reference/street": 10000, "val/query/street": 7608,
                        "test/reference/street": 10000, "test/query/street": 6816},
           "pitts250k": {"test/reference/street": 83952, "test/query/street": 8280},
           "tokyo247": {"test/reference/street": 75984, "test/query/street": 315},
           "sf_xl": {"test/query/street": 1000}}
