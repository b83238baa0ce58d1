"""Benchmark: GPS radius mining, 100k queries x 1M references at 25 m.

Points lie along a synthetic street grid (100 m blocks, 3 m jitter) so each query has a
handful of references within 25 m, as in VG datasets. Rows: search time against scipy's
cKDTree pair search on the same data (a library floor measured in the same run), peak
memory against the size of the links found (never queries x references), exactness
against brute force on a subset, and the great-circle variant against the UTM one.
"""
from __future__ import annotations

import numpy as np

from geobench.bench import MB, interleaved, make_row, peak_rss_subprocess, planted, selected

STAGE = "mine"
RADIUS = 25.0
LINK_BYTES = 24  # query row, reference row, distance: 8 bytes each


def street_points(rng: np.random.Generator, n: int, side_m: float,
                  spacing: float = 100.0) -> np.ndarray:
    along = rng.uniform(0, side_m, n)
    across = np.round(rng.uniform(0, side_m, n) / spacing) * spacing + rng.normal(0, 3, n)
    swap = rng.random(n) < 0.5
    pts = np.where(swap[:, None], np.c_[across, along], np.c_[along, across])
    return pts + [400000.0, 4500000.0]  # UTM-like magnitudes


def kdtree_pairs(q: np.ndarray, r: np.ndarray, radius: float) -> int:
    from scipy.spatial import cKDTree

    pairs = cKDTree(q).sparse_distance_matrix(cKDTree(r), radius, output_type="ndarray")
    return len(pairs)


def mine_case(q: np.ndarray, r: np.ndarray, radius: float, metric: str = "utm") -> int:
    from geobench.geometry.radius import search

    return int(search(q, r, radius, metric).indptr[-1])


def _mismatches(a, b) -> int:
    pa = set(zip(*a.pairs(), strict=False))
    pb = set(zip(*b.pairs(), strict=False))
    bad = len(pa ^ pb)
    if bad == 0 and not np.array_equal(a.distances, b.distances):
        bad = int(np.sum(a.distances != b.distances))
    return bad


def dense_links(q: np.ndarray, r: np.ndarray, radius: float) -> int:
    """The research-script way: the full distance matrix, then a threshold."""
    from scipy.spatial.distance import cdist

    return int(np.count_nonzero(cdist(q, r) <= radius))


def _dense_rows(q: np.ndarray, r: np.ndarray, quick: bool) -> list[dict]:
    """geobench's radius search vs a dense distance matrix, on a subset where it fits."""
    from geobench.geometry.radius import radius_links

    peer = "dense distance matrix (scipy cdist + threshold)"
    if not quick:
        case = f"radius search utm {len(q) // 1000}k q x {len(r) // 1000}k r vs dense"
        if not selected(case):
            return []
        return [make_row(STAGE, case, "time", None, None, "s", "", peer=peer,
                         note=f"not run: the dense matrix needs {len(q) * len(r) * 8 / 2**30:.0f}"
                              f" GB; see the quick run's subset")]
    sub_q, sub_r = q[:1000], r[:20000]
    case = f"radius search utm {len(sub_q) // 1000}k q x {len(sub_r) // 1000}k r vs dense"
    if not selected(case):
        return []
    t = interleaved({"geobench": lambda: radius_links(sub_q, sub_r, RADIUS),
                     "dense": lambda: dense_links(sub_q, sub_r, RADIUS)}, repeat=5, warmup=1)
    mem = {name: peak_rss_subprocess(fn, sub_q, sub_r, RADIUS).delta / MB
           for name, fn in (("geobench", mine_case), ("dense", dense_links))}
    return [make_row(STAGE, case, "time", t["geobench"], t["dense"], "s", "",
                     samples=t.ratios("geobench", "dense"), peer=peer,
                     dense_matrix_mb=round(len(sub_q) * len(sub_r) * 8 / MB)),
            make_row(STAGE, case, "peak_memory", mem["geobench"], mem["dense"], "MB", "",
                     peer=peer, note="peak RSS added by the call, fresh process")]


def run(quick: bool) -> list[dict]:
    from geobench.geometry.gps import utm_to_latlon
    from geobench.geometry.radius import brute_force_links, radius_links

    nq, nr = (10_000, 100_000) if quick else (100_000, 1_000_000)
    side = 20000.0 * np.sqrt(nr / 1_000_000)  # same density at both sizes
    rng = np.random.default_rng(0)
    r, q = street_points(rng, nr, side), street_points(rng, nq, side)
    case = f"{nq // 1000}k q x {nr // 1000}k r @ {RADIUS:g} m"
    rows = []
    if selected(f"radius search utm {case}"):
        links = radius_links(q, r, RADIUS)
        n_links = int(links.indptr[-1])
        grid = planted(f"radius search utm {case}", lambda: radius_links(q, r, RADIUS))
        best = interleaved({"grid": grid, "kdtree": lambda: kdtree_pairs(q, r, RADIUS)},
                           repeat=7 if quick else 5, warmup=1)
        rows.append(make_row(STAGE, f"radius search utm {case}", "time", best["grid"],
                             best["kdtree"], "s", "<=2.0", samples=best.ratios("grid", "kdtree"),
                             peer="scipy cKDTree.sparse_distance_matrix", links=n_links,
                             no_positive=len(links.without_links()),
                             note="floor = scipy cKDTree.sparse_distance_matrix"))
        mem = peak_rss_subprocess(mine_case, q, r, RADIUS)
        rows.append(make_row(STAGE, f"radius search utm {case}", "peak_memory", mem.delta / MB,
                             n_links * LINK_BYTES / MB, "MB", "<=", exact=mem.exact,
                             dense_matrix_mb=round(nq * nr * 8 / MB),
                             note="floor = bytes of the links found"))
    sub_q = q[: 500 if quick else 2000]
    sub_r = r[: 50_000 if quick else 100_000]
    exact_case = f"exactness vs brute force {len(sub_q)} q x {len(sub_r)} r"
    if selected(exact_case):
        fast, slow = radius_links(sub_q, sub_r, RADIUS), brute_force_links(sub_q, sub_r, RADIUS)
        rows.append(make_row(STAGE, exact_case, "mismatches", _mismatches(fast, slow), None,
                             "links", "<=0", compared=int(slow.indptr[-1])))
    rows += _dense_rows(q, r, quick)
    if selected(f"radius search great-circle {case}"):
        lat_q, lon_q = utm_to_latlon(q[:, 0], q[:, 1], 33, "T")
        lat_r, lon_r = utm_to_latlon(r[:, 0], r[:, 1], 33, "T")
        ll_q, ll_r = np.c_[lat_q, lon_q], np.c_[lat_r, lon_r]
        best_ll = interleaved({"latlon": lambda: mine_case(ll_q, ll_r, RADIUS, "latlon"),
                               "utm": lambda: mine_case(q, r, RADIUS, "utm")}, repeat=1,
                              warmup=0)
        rows.append(make_row(STAGE, f"radius search great-circle {case}", "time",
                             best_ll["latlon"], best_ll["utm"], "s", "",
                             note="floor = the same search on UTM"))
    return rows
