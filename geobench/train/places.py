"""Training places: which pairs show one place, and which places may share a batch.

The definitions of the field (never a connected component of the positives graph, which
chains a whole street network into one "location"):

* ``item`` - the place ids a dataset defines (`item` in index.csv): the VIGOR satellite
  tile a panorama belongs to, the University-1652 building, the CVUSA / CVACT pair. A pair
  is a query and a reference of one item. Places never conflict: as in Sample4Geo's and
  LRFR's samplers, a batch only holds one pair per id (nearby pairs are hard negatives).
* ``netvlad`` - Pitts-like VG sets (NetVLAD, Arandjelovic et al. 2016): a place is one
  query, its positives the database images within the training radius (10 m,
  `train_positive` links); two places share a batch only if every image of one is farther
  than the negative radius (25 m) from every image of the other. Each place gives one
  of its pairs per epoch, as NetVLAD visits every query once.
* ``utm_cell`` - CosPlace-style (Berton et al. 2022): the UTM square of `cell_m` metres
  holding the query is the place; the same negative radius separates the places of a
  batch. A cell holds several images (places x images batches, MixVPR) and gives them
  once per epoch.
* ``pair`` - every pair its own place.

``auto`` picks item where every reference carries an item id, netvlad where the split has
`train_positive` links (the VG adapters write them), and utm_cell otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from geobench.errors import DataError

DEFINITIONS = ("auto", "item", "netvlad", "utm_cell", "pair")
NEGATIVE_RADIUS_M = 25.0   # NetVLAD / the VG benchmark: farther than this is a negative
CELL_M = 10.0


@dataclass(frozen=True)
class PairFacts:
    """What a place definition may use, per pair: the query and reference row ids (their
    positions in the split's query and reference rows), items and UTM coordinates."""

    query: np.ndarray          # (P,) int64
    reference: np.ndarray      # (P,) int64
    query_item: np.ndarray     # (P,) str ('' unknown)
    reference_item: np.ndarray
    query_xy: np.ndarray       # (P, 2) float64 UTM easting, northing (NaN unknown)
    reference_xy: np.ndarray
    city: np.ndarray           # (P,) str, the query's city ('' unknown)


@dataclass(frozen=True)
class Places:
    """Place id per pair, plus what a sampler needs to keep a batch's places apart."""

    place: np.ndarray          # (P,) int64, 0..L-1
    xy: np.ndarray             # (L, 2) place centre (mean of its images; NaN unknown)
    city: np.ndarray           # (L,) str
    definition: str
    each_pair: bool            # every pair once per epoch (True) or one pair per place
    separation_m: float | None = None   # images of two places in a batch: farther than this
    reach: np.ndarray | None = None     # (L,) farthest image of each place from its centre
    params: dict[str, Any] | None = None

    def __len__(self) -> int:
        return int(self.place.max()) + 1 if len(self.place) else 0

    def conflicts(self) -> list[np.ndarray] | None:
        """Per place, the other places it must not share a batch with (None: only itself).

        Two places conflict when their centres are at most separation + both reaches
        apart: beyond that every image of one is farther than `separation_m` from every
        image of the other (triangle inequality), so no negative of a batch is a
        positive or in the ambiguous zone between the radii.
        """
        if self.separation_m is None or self.reach is None:
            return None
        from scipy.spatial import cKDTree

        n = len(self.xy)
        out: list[np.ndarray] = [np.zeros(0, np.int64)] * n
        ok = np.flatnonzero(np.isfinite(self.xy).all(axis=1))
        if len(ok) < 2:
            return out
        tree = cKDTree(self.xy[ok])
        radius = self.separation_m + 2 * float(self.reach[ok].max())
        for row, near in enumerate(tree.query_ball_point(self.xy[ok], radius)):
            a = ok[row]
            near = ok[np.asarray(near, dtype=np.int64)]
            d = np.linalg.norm(self.xy[near] - self.xy[a], axis=1)
            keep = (d <= self.separation_m + self.reach[a] + self.reach[near]) & (near != a)
            out[a] = np.sort(near[keep])
        return out

    def to_json(self) -> dict[str, Any]:
        counts = np.bincount(self.place) if len(self.place) else np.zeros(0, np.int64)
        return {"definition": self.definition, "n_places": len(self),
                "pairs_per_place": {"min": int(counts.min()) if len(counts) else 0,
                                    "max": int(counts.max()) if len(counts) else 0},
                "per_epoch": "every pair" if self.each_pair else "one pair (or images_per_place "
                "images) per place", "separation_m": self.separation_m, **(self.params or {})}


def resolve_definition(definition: str, facts: PairFacts, has_train_positive: bool) -> str:
    if definition != "auto":
        return definition
    if len(facts.reference_item) and (facts.reference_item != "").all():
        return "item"
    if has_train_positive:
        return "netvlad"
    return "utm_cell"


def assign_places(facts: PairFacts, definition: str, *, negative_radius_m: float = NEGATIVE_RADIUS_M,
                  cell_m: float = CELL_M, where: str = "the dataset") -> Places:
    """Places of the pairs under `definition` (not 'auto': see resolve_definition)."""
    n = len(facts.query)
    params: dict[str, Any] = {}
    if definition == "pair":
        key = np.arange(n)
    elif definition == "item":
        missing = int((facts.reference_item == "").sum())
        if missing:
            raise DataError(f"{where}: {missing} of {n} training pairs have no item id, so places "
                            f"'item' cannot be formed; use places: netvlad or utm_cell (by "
                            f"position) or re-prepare the dataset with item ids")
        _, key = np.unique(facts.reference_item, return_inverse=True)
    elif definition == "netvlad":
        key = facts.query
    elif definition == "utm_cell":
        if not np.isfinite(facts.query_xy).all():
            raise DataError(f"{where}: {int((~np.isfinite(facts.query_xy).all(1)).sum())} training "
                            f"queries have no UTM position, so places 'utm_cell' cannot be formed; "
                            f"use places: item or pair")
        cells = np.floor(facts.query_xy / cell_m).astype(np.int64)
        _, key = np.unique(cells, axis=0, return_inverse=True)
        params["cell_m"] = cell_m
    else:
        raise DataError(f"unknown place definition {definition!r}; use one of {', '.join(DEFINITIONS)}")
    _, place = np.unique(np.asarray(key).reshape(-1), return_inverse=True)
    place = place.astype(np.int64)
    n_places = int(place.max()) + 1 if n else 0
    xy, reach = _centres(place, n_places, facts)
    city = np.full(n_places, "", dtype=object)
    city[place] = facts.city
    spatial = definition in ("netvlad", "utm_cell")
    if spatial:
        params["negative_radius_m"] = negative_radius_m
    return Places(place=place, xy=xy, city=city.astype(str), definition=definition,
                  each_pair=not spatial, separation_m=negative_radius_m if spatial else None,
                  reach=reach if spatial else None, params=params)


def _centres(place: np.ndarray, n: int, facts: PairFacts) -> tuple[np.ndarray, np.ndarray]:
    """Each place's centre (mean of its images' positions) and reach (its farthest image)."""
    # Each image once per place (a query with several positives is one image).
    image = np.concatenate([2 * facts.query, 2 * facts.reference + 1])
    owner = np.concatenate([place, place])
    _, first = np.unique(np.stack([owner, image], axis=1), axis=0, return_index=True)
    pts = np.concatenate([facts.query_xy, facts.reference_xy])[first]
    owner = owner[first]
    ok = np.isfinite(pts).all(axis=1)
    xy = np.full((n, 2), np.nan)
    cnt = np.bincount(owner[ok], minlength=n)
    for dim in (0, 1):
        sums = np.bincount(owner[ok], pts[ok, dim], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            xy[:, dim] = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
    reach = np.zeros(n)
    dist = np.linalg.norm(pts[ok] - xy[owner[ok]], axis=1)
    np.maximum.at(reach, owner[ok], dist)
    return xy, reach
