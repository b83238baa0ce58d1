"""Tied scores: every metric as its expected value over all orderings of the ties.

A query's best positive has score s; g non-positive references score strictly higher,
t non-positive references score exactly s and p >= 1 positives score exactly s (the best
one included). Sorting cannot decide between equal scores, and the field's codes let
the sort order do it (arbitrary) or, like a strict count, favour the query. geobench
follows McSherry & Najork, "Computing Information Retrieval Performance Measures
Efficiently in the Presence of Tied Scores" (ECIR 2008): a metric is its expected value
over all orderings of the tied scores, each equally likely.

Under a uniformly random ordering, X = the number of tied non-positives placed before
the first tied positive has P(X >= j) = C(t, j) / C(t + p, j), so the hit at K is
P(g + X < K). Policies:
- expected (default): that probability;
- optimistic: X = 0 (every tie in the query's favour; a collapsed model scores 100 %);
- pessimistic: X = t (every tie against the query).
The stored results keep g, t and p per query, so any policy can be recomputed later.
"""
from __future__ import annotations

import numpy as np

from geobench.errors import UsageError

POLICIES = ("expected", "optimistic", "pessimistic")
REFERENCE = ("McSherry & Najork, Computing Information Retrieval Performance Measures "
             "Efficiently in the Presence of Tied Scores, ECIR 2008")
COLLAPSED_SHARE = 0.5  # warn when more than this share of queries has tied non-positives


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise UsageError(f"--ties {policy!r}: unknown tie policy; use one of "
                         f"{', '.join(POLICIES)}")
    return policy


def tail(t: np.ndarray, p: np.ndarray, j: np.ndarray) -> np.ndarray:
    """P(X >= j) = C(t, j) / C(t+p, j) elementwise (1 for j <= 0, 0 for j > t).

    Written as C(t+p-j, p) / C(t+p, p) = prod_{i<p} (t+p-j-i) / (t+p-i): p factors, p is
    small (the tied positives), and no factorial overflows when t ~ Nr (collapsed model).
    """
    t, p, j = np.broadcast_arrays(np.asarray(t, dtype=np.int64), np.asarray(p, dtype=np.int64),
                                  np.asarray(j, dtype=np.int64))
    out = np.where(j <= 0, 1.0, 0.0)
    live = (j > 0) & (j <= t)
    if live.any():
        tl, pl, jl = t[live], p[live], j[live]
        value = np.ones(len(tl))
        for i in range(int(pl.max())):
            use = i < pl
            value[use] *= (tl[use] + pl[use] - jl[use] - i) / (tl[use] + pl[use] - i)
        out[live] = value
    return out


def hit_probability(g: np.ndarray, t: np.ndarray, p: np.ndarray, k: int, policy: str,
                    n_reference: int | None = None) -> np.ndarray:
    """Per query, the probability (0/1 for the bounds) that the first positive is among
    the K first. Queries without a positive (p = 0) never hit."""
    g = np.asarray(g, dtype=np.int64)
    t = np.asarray(t, dtype=np.int64)
    p = np.asarray(p, dtype=np.int64)
    if n_reference is not None:
        k = min(k, n_reference)
    has = p > 0
    if policy == "optimistic":
        out = (g < k).astype(np.float64)
    elif policy == "pessimistic":
        out = (g + t < k).astype(np.float64)
    else:
        out = 1.0 - tail(t, np.maximum(p, 1), k - g)
    return np.where(has, out, 0.0)


def recall_at(g: np.ndarray, t: np.ndarray, p: np.ndarray, k: int, policy: str,
              n_reference: int | None = None) -> float:
    """R@K in percent over all queries under a tie policy."""
    if len(g) == 0:
        return float("nan")
    return 100.0 * float(hit_probability(g, t, p, k, policy, n_reference).mean())


def recall_curve(g: np.ndarray, t: np.ndarray, p: np.ndarray, k_max: int,
                 policy: str) -> tuple[np.ndarray, np.ndarray]:
    """(K, R@K in percent) for K = 1..k_max; untied queries cost one histogram."""
    g = np.asarray(g, dtype=np.int64)
    t = np.asarray(t, dtype=np.int64)
    p = np.asarray(p, dtype=np.int64)
    n = max(1, len(g))
    ks = np.arange(1, k_max + 1, dtype=np.int64)
    has = p > 0
    lead = g + (t if policy == "pessimistic" else 0)
    steps = has & ((t == 0) | (policy != "expected"))
    sure = lead[steps]
    hist = np.bincount(sure[(sure >= 0) & (sure < k_max)], minlength=k_max)[:k_max]
    hits = np.cumsum(hist).astype(np.float64)
    tied = np.flatnonzero(has & ~steps & (g < k_max))  # expected policy, tied queries
    if len(tied):  # one curve per distinct (g, t, p), weighted by how many queries share it
        combos, counts = np.unique(np.stack([g[tied], t[tied], p[tied]], axis=1), axis=0,
                                   return_counts=True)
        for (gq, tq, pq), n_same in zip(combos, counts, strict=True):
            hits[gq:] += n_same * (1.0 - tail(tq, pq, ks[gq:] - gq))  # K - g for K > g
    return ks, 100.0 * hits / n


def average_precision(above: np.ndarray, tied: np.ndarray, scores: np.ndarray,
                      indptr: np.ndarray, policy: str) -> np.ndarray:
    """University-1652 AP per query (0..1) under a tie policy, see `metrics.ap_term`.

    Rows hold positives sorted by score, descending; `above`/`tied` count the references
    strictly above / exactly at each positive's score. Positives with equal scores form
    a group of p_g positives and t_g = tied - p_g non-positives, placed after the `above`
    references. The j-th positive of a group (j = 1..p_g) sits at above + (j - 1) + Y_j,
    Y_j = tied non-positives before it: 0 (optimistic), t_g (pessimistic), or, over all
    orderings (expected), P(Y_j = y) = C(y+j-1, j-1) C(t_g-y+p_g-j, p_g-j) / C(t_g+p_g, p_g).
    AP is a sum of per-positive terms, so its expectation is the sum of expected terms.
    """
    from geobench.eval.metrics import ap_term

    lengths = np.diff(indptr)
    n_query = len(lengths)
    ap = np.zeros(n_query, dtype=np.float64)
    n = len(scores)
    if n == 0:
        return ap
    rows = np.repeat(np.arange(n_query), lengths)
    idx = np.arange(n)
    new = np.ones(n, dtype=bool)
    new[1:] = (rows[1:] != rows[:-1]) | (scores[1:] != scores[:-1])
    first = np.maximum.accumulate(np.where(new, idx, 0))
    group_id = np.cumsum(new) - 1
    p_g = np.bincount(group_id)[group_id]
    j = idx - first + 1
    t_g = np.maximum(np.asarray(tied, dtype=np.int64) - p_g, 0)
    i = idx - indptr[rows]  # index of the positive within its query
    base = np.asarray(above, dtype=np.int64) + j - 1
    n_pos = lengths[rows].astype(np.float64)
    if policy == "pessimistic":
        base = base + t_g
    plain = (t_g == 0) | (policy != "expected")
    terms = np.zeros(n)
    terms[plain] = ap_term(i[plain], base[plain])
    from scipy.special import gammaln

    for g0 in np.flatnonzero(new & ~plain):  # expected policy: one tie group at a time
        pg, tg = int(p_g[g0]), int(t_g[g0])
        jj = np.arange(1, pg + 1, dtype=np.float64)[:, None]
        y = np.arange(tg + 1, dtype=np.float64)[None, :]
        log = (_log_comb(y + jj - 1, jj - 1, gammaln) + _log_comb(tg - y + pg - jj, pg - jj, gammaln)
               - _log_comb(float(tg + pg), float(pg), gammaln))
        members = slice(g0, g0 + pg)
        f = ap_term(i[members][:, None], base[members][:, None] + y.astype(np.int64))
        terms[members] = (np.exp(log) * f).sum(axis=1)
    np.add.at(ap, rows, terms / n_pos)
    return ap


def _log_comb(a, b, gammaln):
    return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)


def vigor_hits(g: np.ndarray, t: np.ndarray, p: np.ndarray, semi_above: np.ndarray,
               semi_tied: np.ndarray, policy: str) -> np.ndarray:
    """VIGOR hit (no reference other than semi-positives before the positive), per query,
    as a probability under a tie policy: of the t - semi_tied tied non-positives that are
    not semi-positives, none may come before the first of the p tied positives, which
    happens with probability p / (t' + p) over all orderings."""
    g, t, p = (np.asarray(a, dtype=np.int64) for a in (g, t, p))
    others = t - np.asarray(semi_tied, dtype=np.int64)
    base = (p > 0) & (g - np.asarray(semi_above, dtype=np.int64) == 0)
    if policy == "optimistic":
        return base.astype(np.float64)
    if policy == "pessimistic":
        return (base & (others == 0)).astype(np.float64)
    return np.where(base, np.maximum(p, 1) / np.maximum(others + p, 1), 0.0)


def chance_curve(n_positives: np.ndarray, n_reference: int,
                 k_max: int) -> tuple[np.ndarray, np.ndarray]:
    """R@K (percent) of a random ranking, K = 1..k_max: a model whose descriptors are all
    equal ties every reference, so chance is its expected curve (t = Nr - n, p = n, g = 0)."""
    n = np.asarray(n_positives, dtype=np.int64)
    return recall_curve(np.zeros(len(n), np.int64), np.maximum(n_reference - n, 0) * (n > 0),
                        n, k_max, "expected")


def tie_summary(t: np.ndarray, p: np.ndarray) -> dict[str, int]:
    """Counts for metrics.csv: queries whose best positive ties with a non-positive."""
    t = np.asarray(t)
    return {"n_tied_queries": int(np.count_nonzero(t > 0))}


def collapsed_warning(t: np.ndarray, p: np.ndarray, n_reference: int,
                      policy: str) -> str | None:
    """A warning when descriptors look collapsed: most queries tie at their best positive."""
    has = np.asarray(p) > 0
    if not has.any():
        return None
    tied = int(np.count_nonzero(np.asarray(t)[has] > 0))
    if tied <= COLLAPSED_SHARE * int(has.sum()):
        return None
    median = int(np.median(np.asarray(t)[has]))
    return (f"descriptors look collapsed: {tied} of {int(has.sum())} queries have references "
            f"scored exactly like their best positive (median {median} of {n_reference}); "
            f"check the model output (recalls use --ties {policy})")
