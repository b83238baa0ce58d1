"""GPS mining for prepared datasets: positives by radius, and training helpers.

`mine_dataset` runs an exact radius search (geobench.geometry.radius) between the
queries and references of one split and writes the links into DS/positives.csv with
their kind and distance: `positive` within `radius` (evaluation, 25 m in the VG
protocols) and, for the train split, `train_positive` within `train_radius` (10 m).
Distances are UTM Euclidean when every row has utm_e/utm_n in one zone, great-circle on
lat/lon otherwise (or when asked); mixed UTM zones are refused unless lat/lon is used.
A point exactly on the radius counts (distance <= radius).

Training helpers: `hard_positives` (train radius), `negative_links` + `sample_negatives`
(negatives lie beyond the negative radius) and `nearest_neighbours` for GPS-aware batch
sampling.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geobench.errors import DataError, UsageError
from geobench.geometry.gps import EARTH_RADIUS_M, latlon_to_unit, utm_zone
from geobench.geometry.radius import Links, _as_points, brute_force_links, search

__all__ = ["Links", "MineOptions", "MineReport", "brute_force_links", "hard_positives",
           "mine_dataset", "mine_links", "negative_links", "nearest_neighbours",
           "resolve_metric", "sample_negatives", "search"]

METRICS = ("auto", "utm", "latlon")
_STANDARD_MANIFEST = {"schema", "dataset", "raw_root", "derived_dirs", "created_at", "counts",
                      "n_positives", "parameters", "sha256", "versions"}


@dataclass(frozen=True)
class MineOptions:
    split: str = "test"
    radius: float = 25.0
    train_radius: float | None = 10.0
    negative_radius: float = 25.0
    metric: str = "auto"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise UsageError(f"--metric {self.metric!r} is not one of {' | '.join(METRICS)}")
        for name in ("radius", "train_radius", "negative_radius"):
            value = getattr(self, name)
            if value is not None and (not np.isfinite(value) or value < 0):
                raise UsageError(f"--{name.replace('_', '-')} {value} must be a non-negative "
                                 f"number of metres")


@dataclass
class MineReport:
    ds: Path
    options: MineOptions
    metric: str
    n_queries: int
    n_references: int
    links: dict[str, int]
    no_positive: list[str]
    replaced: int
    seconds: float
    prepared: Any = field(default=None, repr=False)


def _first_missing(frame: pd.DataFrame, cols: tuple[str, str]) -> int | None:
    bad = ~np.isfinite(frame[list(cols)].to_numpy(dtype=float)).all(axis=1)
    return int(np.flatnonzero(bad)[0]) if bad.any() else None


def resolve_metric(frame: pd.DataFrame, metric: str, path: Path) -> str:
    """"utm" or "latlon" for these index rows, or a one-line DataError saying why not."""
    if metric not in METRICS:
        raise UsageError(f"metric {metric!r} is not one of {' | '.join(METRICS)}")
    utm_gap = _first_missing(frame, ("utm_e", "utm_n"))
    ll_gap = _first_missing(frame, ("lat", "lon"))

    def line(i: int) -> str:
        return f"{path}:{int(frame.index[i]) + 2}"

    if metric == "latlon" or (metric == "auto" and utm_gap is not None):
        if ll_gap is not None:
            what = "utm_e/utm_n or lat/lon" if metric == "auto" else "lat/lon"
            raise DataError(f"{line(ll_gap)}: {frame['uid'].iloc[ll_gap]!r} has no {what}; "
                            f"GPS mining needs coordinates on every query and reference")
        return "latlon"
    if utm_gap is not None:
        raise DataError(f"{line(utm_gap)}: {frame['uid'].iloc[utm_gap]!r} has no utm_e/utm_n; "
                        f"fill them or mine with --metric latlon")
    if ll_gap is None:
        zones = np.unique(utm_zone(frame["lat"].to_numpy(float), frame["lon"].to_numpy(float)))
        if len(zones) > 1:
            raise DataError(f"{path}: the rows span UTM zones {', '.join(map(str, zones))}, "
                            f"where eastings/northings are not comparable; mine with "
                            f"--metric latlon (great-circle distances)")
    return "utm"


def _points(frame: pd.DataFrame, metric: str) -> np.ndarray:
    cols = ["utm_e", "utm_n"] if metric == "utm" else ["lat", "lon"]
    return frame[cols].to_numpy(dtype=np.float64)


def _split_rows(prepared: Any, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    path = prepared.root / "index.csv"
    queries = prepared.select(split=split, role="query")
    refs = prepared.select(split=split, role="reference")
    for frame, role in ((queries, "queries"), (refs, "references")):
        if frame.empty:
            raise DataError(f"{path}: split {split!r} has no {role}; pick another --split "
                            f"(the index has {', '.join(sorted(prepared.index['split'].unique()))})")
    return queries, refs


def mine_links(prepared: Any, split: str, radius: float,
               metric: str = "auto") -> tuple[Links, pd.DataFrame, pd.DataFrame, str]:
    """Links between the split's queries and references within `radius` metres."""
    queries, refs = _split_rows(prepared, split)
    used = resolve_metric(pd.concat([queries, refs]), metric, prepared.root / "index.csv")
    return search(_points(queries, used), _points(refs, used), radius, used), queries, refs, used


def hard_positives(prepared: Any, split: str = "train", radius: float = 10.0,
                   metric: str = "auto") -> Links:
    return mine_links(prepared, split, radius, metric)[0]


def negative_links(prepared: Any, split: str = "train", negative_radius: float = 25.0,
                   metric: str = "auto") -> Links:
    """References too close to be negatives (within `negative_radius`), per query."""
    return mine_links(prepared, split, negative_radius, metric)[0]


def _rows(links: Links, queries: pd.DataFrame, refs: pd.DataFrame, split: str,
          kind: str) -> pd.DataFrame:
    qi, ri = links.pairs()
    return pd.DataFrame({"split": split, "query": queries["uid"].to_numpy()[qi],
                         "reference": refs["uid"].to_numpy()[ri], "kind": kind,
                         "distance_m": links.distances})


def mine_dataset(ds: str | Path, options: MineOptions = MineOptions()) -> MineReport:
    """Mine one split's GPS positives and rewrite DS/positives.csv (and its manifest).

    Existing rows of that split and the kinds written are replaced; other rows
    (other splits, semi-positives) are kept.
    """
    from geobench.prepared import read_prepared, write_prepared

    t0 = time.perf_counter()
    prepared = read_prepared(ds)
    o = options
    links, queries, refs, used = mine_links(prepared, o.split, o.radius, o.metric)
    new = [_rows(links, queries, refs, o.split, "positive")]
    kinds = ["positive"]
    if o.split == "train" and o.train_radius is not None:
        train = search(_points(queries, used), _points(refs, used), o.train_radius, used)
        new.append(_rows(train, queries, refs, o.split, "train_positive"))
        kinds.append("train_positive")
    old = prepared.positives
    drop = (old["split"] == o.split) & old["kind"].isin(kinds)
    positives = pd.concat([old[~drop], *new], ignore_index=True)
    manifest = prepared.manifest
    parameters = dict(manifest.get("parameters", {}))
    mining = dict(parameters.get("mining", {}))
    mining[o.split] = {"radius_m": o.radius, "train_radius_m": o.train_radius,
                       "negative_radius_m": o.negative_radius, "metric": used,
                       "inclusive": True, "earth_radius_m": EARTH_RADIUS_M}
    parameters["mining"] = mining
    written = write_prepared(prepared.root, prepared.index, positives, dataset=prepared.name,
                             raw_root=prepared.raw_root, parameters=parameters,
                             derived_dirs=prepared.derived_dirs,
                             extra={k: v for k, v in manifest.items()
                                    if k not in _STANDARD_MANIFEST})
    counts = {kind: len(frame) for kind, frame in zip(kinds, new, strict=False)}
    return MineReport(Path(ds), o, used, len(queries), len(refs), counts,
                      list(queries["uid"].to_numpy()[links.without_links()]), int(drop.sum()),
                      time.perf_counter() - t0, written)


# --------------------------------------------------------------------------- training helpers


def sample_negatives(rng: np.random.Generator, exclude: Links, count: int) -> np.ndarray:
    """(n_queries, count) reference rows drawn uniformly among those NOT linked in
    `exclude` (e.g. the links within the negative radius)."""
    nq, nr = exclude.n_queries, exclude.n_references
    allowed = nr - exclude.counts()
    if count > 0 and np.any(allowed < 1):
        bad = int(np.flatnonzero(allowed < 1)[0])
        raise UsageError(f"query row {bad} has no reference beyond the negative radius; "
                         f"use a smaller --negative-radius")
    qi, ri = exclude.pairs()
    # Sorted (query, reference) keys of the banned pairs, closed by a sentinel above every
    # real key so a lookup always lands on an element (no links at all, or none for the
    # last query, would otherwise search past the end).
    banned = np.append(np.sort(qi * nr + ri), nq * nr)
    out = np.full((nq, count), -1, dtype=np.int64)
    todo = np.repeat(np.arange(nq), count)
    slot = np.tile(np.arange(count), nq)
    while todo.size:
        cand = rng.integers(0, nr, size=todo.size)
        key = todo * nr + cand
        ok = banned[np.searchsorted(banned, key)] != key
        out[todo[ok], slot[ok]] = cand[ok]
        todo, slot = todo[~ok], slot[~ok]
    return out


def nearest_neighbours(points: Any, k: int, metric: str = "utm",
                       exclude_self: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(indices, metres) of each point's k nearest others, nearest first, for GPS-aware
    batch sampling (Sample4Geo puts geographic neighbours in the same batch)."""
    from scipy.spatial import cKDTree

    if metric not in ("utm", "latlon"):
        raise UsageError(f"metric {metric!r} is not one of utm | latlon")
    pts = _as_points(points, "points")
    n = len(pts)
    k_eff = min(k + int(exclude_self), n)
    if k < 1 or n - int(exclude_self) < 1:
        raise UsageError(f"k={k} neighbours of {n} point(s) needs k >= 1 and at least one "
                         f"other point")
    space = latlon_to_unit(pts[:, 0], pts[:, 1]) if metric == "latlon" else pts
    dist, idx = cKDTree(space).query(space, k=k_eff)
    idx, dist = np.atleast_2d(idx.reshape(n, -1)), np.atleast_2d(dist.reshape(n, -1))
    if exclude_self:
        # drop each point itself (not merely the first column: duplicates tie at 0 m)
        not_self = idx != np.arange(n)[:, None]
        keep_cols = np.where(not_self.all(axis=1)[:, None], np.arange(k_eff) < k_eff - 1,
                             not_self)
        idx = idx[keep_cols].reshape(n, k_eff - 1)
        dist = dist[keep_cols].reshape(n, k_eff - 1)
    if metric == "latlon":
        dist = 2.0 * EARTH_RADIUS_M * np.arcsin(np.clip(dist / 2.0, 0.0, 1.0))
    return idx, dist
