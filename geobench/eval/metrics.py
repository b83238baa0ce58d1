"""Retrieval metrics, all derived from ranks (reference/datasets.md §3.5, §4.2, §5.4, §8).

A rank is the number of references strictly more similar than the query's best
positive; a query without positives carries rank = n_reference and is a miss at every
K. Recalls are percentages over *all* queries.
"""
from __future__ import annotations

import numpy as np

EARTH_RADIUS_M = 6371004.0  # VIGOR evaluate_from_npy.py


def recall_at(ranks: np.ndarray, k: int, n_reference: int | None = None) -> float:
    """R@K in percent: share of queries whose best positive is among the K first.

    Pass n_reference so that K > Nr cannot count the rank-Nr queries (no positive).
    """
    if len(ranks) == 0:
        return float("nan")
    if n_reference is not None:
        k = min(k, n_reference)
    return 100.0 * float(np.count_nonzero(ranks < k)) / len(ranks)


def curve_k_max(n_reference: int, k_one_percent: int) -> int:
    """The curve covers every K up to at least 100 and the R@1% cut-off (≤ Nr)."""
    return max(1, min(n_reference, max(100, k_one_percent)))


def recall_curve(ranks: np.ndarray, k_max: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, R@K in percent) for K = 1..k_max."""
    ranks = np.asarray(ranks, dtype=np.int64)
    hist = np.bincount(ranks[(ranks >= 0) & (ranks < k_max)], minlength=k_max)[:k_max]
    recall = 100.0 * np.cumsum(hist) / max(1, len(ranks))
    return np.arange(1, k_max + 1, dtype=np.int64), recall


def hits(ranks: np.ndarray, semi_above: np.ndarray, n_reference: int) -> np.ndarray:
    """VIGOR hit: no reference other than the semi-positives beats the positive.

    Official `validate_top`: zero the semi-positives, hit if nothing else has a
    strictly smaller distance than the positive. `semi_above` counts semi-positives
    strictly more similar than the best positive (they are included in the rank).
    """
    ranks = np.asarray(ranks)
    return (ranks < n_reference) & (ranks - np.asarray(semi_above) == 0)


def positive_positions(above: np.ndarray, scores: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """0-based position of every positive in the ranking, ties in the query's favour.

    Input rows hold positives sorted by score, descending; `above` counts the references
    strictly more similar than each positive. A positive is placed after the references
    strictly above it, after the positives above it, and before tied negatives:
    position = above - (#positives strictly above) + (index within the row).
    """
    n = len(scores)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    idx = np.arange(n)
    new = np.ones(n, dtype=bool)
    new[1:] = (rows[1:] != rows[:-1]) | (scores[1:] != scores[:-1])
    first = np.maximum.accumulate(np.where(new, idx, 0))
    return (np.asarray(above, dtype=np.int64) + idx - first).astype(np.int64)


def average_precision(positions: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """University-1652 AP per query (trapezoidal, `evaluate_gpu.py::compute_mAP`), 0..1.

    `positions` are the ascending ranking positions of each query's positives. With
    n good matches at positions p_i: AP = Σ_i (1/n)·(old_i + prec_i)/2, prec_i =
    (i+1)/(p_i+1), old_i = i/p_i (1 when p_i = 0). No positives: AP = 0.
    """
    lengths = np.diff(indptr)
    n_query = len(lengths)
    ap = np.zeros(n_query, dtype=np.float64)
    if len(positions) == 0:
        return ap
    rows = np.repeat(np.arange(n_query), lengths)
    i = np.arange(len(positions)) - indptr[rows]
    p = np.asarray(positions, dtype=np.float64)
    precision = (i + 1) / (p + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        old = np.where(p == 0, 1.0, i / np.where(p == 0, 1.0, p))
    terms = (old + precision) / 2 / lengths[rows]
    np.add.at(ap, rows, terms)
    return ap


def great_circle_m(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray,
                   lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance in metres on VIGOR's sphere (R = 6371004 m).

    VIGOR writes it with the law of cosines; the haversine form is the same distance
    without arccos's loss of precision at metre scale.
    """
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def error_summary(errors_m: np.ndarray) -> dict[str, float]:
    """Mean and median metre error and the share of queries within 1, 5, 10 and 25 m."""
    errors_m = np.asarray(errors_m, dtype=np.float64)
    if len(errors_m) == 0:
        return {}
    out = {"error_mean_m": float(errors_m.mean()), "error_median_m": float(np.median(errors_m))}
    for t in (1, 5, 10, 25):
        out[f"acc@{t}m"] = 100.0 * float(np.mean(errors_m < t))
    return out
