"""Exact, memory-bounded retrieval: ranks of the best positive and a merged top-K.

The query×reference score matrix is never built. Queries and references are processed
in blocks sized from a memory budget; each block product is one float32 matrix product
(numpy/BLAS on CPU, torch on a GPU), and everything else done to a block is a cheap
comparison pass, so the product dominates the run time.

Exactness. A query's rank g is the number of references *strictly* more similar than
its best positive; beside it the search counts the references whose score *equals* the
best positive's (t non-positives, p positives), from which `geobench.eval.ties` gives
every metric under any tie policy. Comparing a float32 GEMM score with a
separately computed positive score would let rounding decide ties (a positive could even
outrank itself, and the answer could change with the block size). So the *canonical*
score of a pair is the float64 sum of its exact float32 products, a deterministic
function of the two vectors: duplicated descriptors tie exactly. A reference is counted
from the GEMM score when it is clearly above the threshold (by more than a rounding
bound `tol`); the few inside the ±tol band are re-scored canonically, and an exact tie
always lies inside the band. Ranks and tie counts are therefore identical for every block
size, backend and device.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from geobench.errors import UsageError
from geobench.eval import blocks, threads
from geobench.eval.compiled import make_engine, resolve_passes
from geobench.eval.csr import CSR
from geobench.eval.plan import (
    BlockPlan,
    SearchOptions,
    _resolve_backend,
    pair_scores,
    plan_blocks,
    tolerance,
)
from geobench.progress import bar

__all__ = ["CSR", "BlockPlan", "SearchOptions", "SearchResult", "pair_scores", "plan_blocks",
           "search", "tolerance"]


@dataclass
class SearchResult:
    """Ranks, per-positive counts and top-K of one search.

    positives: per query, the (deduplicated) positives sorted by canonical score,
    descending (ties by reference number); positive_scores aligned with it.
    above: aligned with positives, references strictly more similar than that positive
    (only the first of each row unless all_positives was asked for; -1 elsewhere).
    tied: aligned likewise, references (positives included, itself too) whose canonical
    score equals that positive's.
    ranks: above of the best positive (g), or n_reference for a query without positives.
    tied_nonpositives (t), tied_positives (p): per query, the non-positive references and
    the positives whose score equals the best positive's (p >= 1 when it has one).
    """

    ranks: np.ndarray
    positives: CSR
    positive_scores: np.ndarray
    above: np.ndarray
    topk_indices: np.ndarray
    topk_scores: np.ndarray
    n_reference: int
    plan: BlockPlan
    # None where a search cannot count ties (faiss: the index order decides them)
    tied_nonpositives: np.ndarray | None = None
    tied_positives: np.ndarray | None = None
    tied: np.ndarray | None = None
    # seconds per phase of the block loop: products, passes (counts, top-K), rescoring
    phases: dict[str, float] = field(default_factory=dict)


def search(query: np.ndarray, reference: np.ndarray, positives: CSR, *, k: int = 0,
           all_positives: bool = False, options: SearchOptions = SearchOptions(),
           progress: str = "searching") -> SearchResult:
    """Exact search: ranks of the best positive (and optionally of every positive) + top-K."""
    if query.ndim != 2 or reference.ndim != 2:
        raise UsageError(f"descriptors must be 2-D (N, D) arrays, got queries {query.shape} "
                         f"and references {reference.shape}")
    nq, dim = query.shape
    nr = reference.shape[0]
    if nq == 0 or nr == 0:
        raise UsageError(f"nothing to search: {nq} queries and {nr} references")
    if reference.shape[1] != dim:
        raise UsageError(f"descriptor sizes differ: queries have D={dim}, references "
                         f"have shape {reference.shape}")
    if positives.n_rows != nq:
        raise UsageError(f"positives have {positives.n_rows} rows for {nq} queries")
    pos = positives.unique()
    if len(pos.indices) and (pos.indices.min() < 0 or pos.indices.max() >= nr):
        raise UsageError(f"positive reference numbers must lie in [0, {nr})")
    k = int(min(max(k, 0), nr))
    rows = pos.row_ids()
    scores = pair_scores(query, reference, rows, pos.indices)
    order = np.lexsort((pos.indices, -scores, rows))
    pos = CSR(pos.indptr, pos.indices[order])
    scores = scores[order]
    lengths = pos.lengths
    m = int(lengths.max(initial=0)) if all_positives else int(lengths.max(initial=0) > 0)
    thresholds = np.full((nq, max(m, 1)), np.inf)
    slot = np.arange(len(rows)) - pos.indptr[rows]
    used = slot < m
    thresholds[rows[used], slot[used]] = scores[used]

    name, device = _resolve_backend(options)
    tol = tolerance(query, reference)
    workers = threads.search_workers(name, nq)
    passes = resolve_passes(name, options.passes)
    plan = plan_blocks(nq, nr, dim, options, name, device, tol, k, workers=workers,
                       passes=passes)
    above = np.zeros(thresholds.shape, dtype=np.int64)
    tied = np.zeros(thresholds.shape, dtype=np.int64)
    top_i = np.full((nq, k), -1, dtype=np.int64)
    top_s = np.full((nq, k), -np.inf, dtype=np.float32)
    n_blocks = -(-nq // plan.block_queries) * -(-nr // plan.block_references)
    engines = [make_engine(name, device, query, reference, plan,
                                  options.memory_bytes // workers) for _ in range(workers)]

    def run(engine, q0: int) -> None:
        q1 = min(nq, q0 + plan.block_queries)
        blocks.run_query_block(engine, q0, q1, thresholds[q0:q1], above[q0:q1], tied[q0:q1],
                               top_i[q0:q1], top_s[q0:q1], handle)

    with bar(progress, total=n_blocks) as handle:
        threads.each(run, engines, range(0, nq, plan.block_queries))
    has = lengths > 0
    ranks = np.where(has, above[:, 0], nr).astype(np.int64)
    flat_above = np.full(len(rows), -1, dtype=np.int64)
    flat_above[used] = above[rows[used], slot[used]]
    flat_tied = np.full(len(rows), -1, dtype=np.int64)
    flat_tied[used] = tied[rows[used], slot[used]]
    best = np.full(nq, np.nan)
    best[has] = scores[pos.indptr[:-1][has]]
    p = np.bincount(rows[scores == best[rows]], minlength=nq).astype(np.int64)
    t = np.where(has, tied[:, 0] - p, 0).astype(np.int64)
    top_i, top_s = _sort_topk(top_i, top_s)
    return SearchResult(ranks, pos, scores, flat_above, top_i, top_s, nr, plan, t, p, flat_tied,
                        threads.mean_phases(engines))


def _sort_topk(idx: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order each row by score descending, ties by reference number."""
    if idx.shape[1] == 0:
        return idx, scores
    order = np.lexsort((idx, -scores.astype(np.float64)), axis=1)
    return np.take_along_axis(idx, order, 1), np.take_along_axis(scores, order, 1)

