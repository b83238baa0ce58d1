"""Metrics that do not depend on ties: the curve length, University-1652 AP terms and
VIGOR's metre error. Recall, hit rate and AP under a tie policy are in
`geobench.eval.ties`. Recalls are percentages over *all* queries; a query without
positives is a miss at every K.
"""
from __future__ import annotations

import numpy as np

EARTH_RADIUS_M = 6371004.0  # VIGOR evaluate_from_npy.py


def curve_k_max(n_reference: int, k_one_percent: int) -> int:
    """The curve covers every K up to at least 100 and the R@1% cut-off (≤ Nr)."""
    return max(1, min(n_reference, max(100, k_one_percent)))


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
    np.add.at(ap, rows, ap_term(i, positions) / lengths[rows])
    return ap


def ap_term(i: np.ndarray, position: np.ndarray) -> np.ndarray:
    """(old + prec)/2 of the i-th positive (0-based) at 0-based ranking `position`."""
    i = np.asarray(i, dtype=np.float64)
    p = np.asarray(position, dtype=np.float64)
    precision = (i + 1) / (p + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        old = np.where(p == 0, 1.0, i / np.where(p == 0, 1.0, p))
    return (old + precision) / 2


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
