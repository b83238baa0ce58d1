"""Shortlist re-ranking: the global top-K re-ordered by a pair score, the rest left in place.

Pair-dependent models (ASA-VG crops each panorama where it best matches the query) cannot
be searched exhaustively with their exact score, so `geobench eval --rerank K` runs the
exact global search on their query-independent descriptors, asks the model for the pair
score of each query's K best references, and re-orders those K. The final ranking of a
query is the re-ordered shortlist followed by every other reference in global order, so
ranks beyond K come from the global search (recorded as `rerank_k` / `rerank` in
metrics.csv and results.h5).

Ranks and tie counts (g, t, p of `geobench.eval.ties`) of that ranking:
* a positive in the shortlist: counted inside it with the pair scores (g' < K);
* otherwise: the K shortlisted references come first, then the global order, so
  g' = K + g - a and t' = t - c, where a and c count the shortlisted references whose
  canonical global score is above / equal to the best positive's.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from geobench.errors import UsageError
from geobench.eval.plan import pair_scores
from geobench.eval.search import SearchResult

# shortlist (Nq, K) reference rows -> pair scores (Nq, K); higher is more similar.
PairScorer = Callable[[np.ndarray], np.ndarray]
LABEL = "global top-K re-ordered by the model's pair score; ranks beyond K from global search"


def check_rerank(k: int, protocol_name: str, ap: bool, hit_rate: bool) -> None:
    if k < 0:
        raise UsageError(f"--rerank must be >= 0 (0 turns re-ranking off), got {k}")
    if k and (ap or hit_rate):
        what = "AP" if ap else "the hit rate"
        raise UsageError(f"protocol {protocol_name} reports {what}, which --rerank does not "
                         f"recompute from the re-ordered shortlist; use --rerank 0")


def rerank_result(res: SearchResult, query: np.ndarray, reference: np.ndarray, k: int,
                  scorer: PairScorer) -> SearchResult:
    """`res` with each query's top-k re-ordered by `scorer` (needs res.topk width >= k)."""
    nq, nr = query.shape[0], reference.shape[0]
    k = min(k, nr)
    if res.topk_indices.shape[1] < k:
        raise ValueError("the search kept fewer than k references per query")
    short = res.topk_indices[:, :k]
    scores = np.asarray(scorer(short), dtype=np.float64)
    if scores.shape != short.shape:
        raise ValueError(f"pair scorer returned {scores.shape}, expected {short.shape}")
    order = np.lexsort((short, -scores), axis=1)  # best first, ties by reference number
    short, scores = np.take_along_axis(short, order, 1), np.take_along_axis(scores, order, 1)

    pos = res.positives
    rows = np.repeat(np.arange(nq), k)
    is_pos = np.isin(rows * nr + short.ravel(), pos.row_ids() * nr + pos.indices).reshape(nq, k)
    has = pos.lengths > 0
    inside = is_pos.any(axis=1)
    ranks, t, p = res.ranks.copy(), res.tied_nonpositives, res.tied_positives
    t = np.zeros(nq, np.int64) if t is None else t.copy()
    p = has.astype(np.int64) if p is None else p.copy()

    # A positive in the shortlist: everything is decided by the pair scores.
    best = np.where(is_pos, scores, -np.inf).max(axis=1, initial=-np.inf)[:, None]
    neg = ~is_pos
    ranks[inside] = ((scores > best) & neg).sum(axis=1)[inside]
    t[inside] = ((scores == best) & neg).sum(axis=1)[inside]
    p[inside] = ((scores == best) & is_pos).sum(axis=1)[inside]

    # No positive in the shortlist: it sits in the global remainder, behind all K.
    out = np.flatnonzero(has & ~inside)
    if len(out):
        canon = pair_scores(query, reference, np.repeat(out, k), short[out].ravel()).reshape(-1, k)
        best_pos = res.positive_scores[pos.indptr[:-1][out]][:, None]
        above = (canon > best_pos).sum(axis=1)
        level = (canon == best_pos).sum(axis=1)
        ranks[out] = k + res.ranks[out] - above
        t[out] = t[out] - level

    top_i, top_s = res.topk_indices.copy(), res.topk_scores.copy()
    top_i[:, :k], top_s[:, :k] = short, scores.astype(top_s.dtype)
    return replace(res, ranks=ranks, tied_nonpositives=t, tied_positives=p,
                   topk_indices=top_i, topk_scores=top_s, above=np.full_like(res.above, -1),
                   tied=None)
