"""Exact, memory-bounded retrieval: ranks of the best positive and a merged top-K.

The query×reference score matrix is never built. Queries and references are processed
in blocks sized from a memory budget; each block product is one float32 matrix product
(numpy/BLAS on CPU, torch on a GPU), and everything else done to a block is a cheap
comparison pass, so the product dominates the run time.

Exactness. A query's rank is the number of references *strictly* more similar than its
best positive (ties count in the query's favour). Comparing a float32 GEMM score with a
separately computed positive score would let rounding decide ties (a positive could even
outrank itself, and the answer could change with the block size). So the *canonical*
score of a pair is the float64 sum of its exact float32 products, a deterministic
function of the two vectors: duplicated descriptors tie exactly. A reference is counted
from the GEMM score when it is clearly above the threshold (by more than a rounding
bound `tol`); the few inside the ±tol band are re-scored canonically. Ranks are therefore
identical for every block size, backend and device.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from geobench.errors import DataError, UsageError
from geobench.progress import bar

_U32 = 2.0 ** -24  # float32 unit round-off
_PAIR_BATCH_BYTES = 4 << 20  # float64 gathers for canonical re-scoring (reused, cache-sized)


@dataclass(frozen=True)
class CSR:
    """Rows of reference numbers per query (compressed sparse rows)."""

    indptr: np.ndarray
    indices: np.ndarray

    @classmethod
    def from_lists(cls, rows: Sequence[Iterable[int]]) -> CSR:
        lists = [np.asarray(list(r), dtype=np.int64) for r in rows]
        indptr = np.zeros(len(lists) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(r) for r in lists])
        indices = np.concatenate(lists) if lists else np.zeros(0, np.int64)
        return cls(indptr, indices.astype(np.int64))

    @classmethod
    def from_pairs(cls, query: np.ndarray, reference: np.ndarray, n_query: int) -> CSR:
        query = np.asarray(query, dtype=np.int64)
        reference = np.asarray(reference, dtype=np.int64)
        order = np.lexsort((reference, query))
        counts = np.bincount(query, minlength=n_query)
        indptr = np.zeros(n_query + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(counts)
        return cls(indptr, reference[order])

    @classmethod
    def empty(cls, n_query: int) -> CSR:
        return cls(np.zeros(n_query + 1, np.int64), np.zeros(0, np.int64))

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def row_ids(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), self.lengths)

    def row(self, i: int) -> np.ndarray:
        return self.indices[self.indptr[i]:self.indptr[i + 1]]

    def unique(self) -> CSR:
        """Rows sorted ascending with duplicates removed."""
        rows = self.row_ids()
        if len(rows) == 0:
            return CSR(self.indptr.astype(np.int64), self.indices.astype(np.int64))
        order = np.lexsort((self.indices, rows))
        rows, cols = rows[order], self.indices[order].astype(np.int64)
        keep = np.ones(len(rows), dtype=bool)
        keep[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
        return CSR.from_pairs(rows[keep], cols[keep], self.n_rows)


@dataclass(frozen=True)
class SearchOptions:
    """How to search. `memory_bytes` bounds working memory beyond the descriptors."""

    memory_bytes: int = 2 << 30
    backend: str = "auto"  # auto (torch on CUDA when present, else numpy) | numpy | torch
    device: str | None = None  # torch device for backend="torch"
    block_queries: int | None = None  # explicit block sizes (tests, benchmarks)
    block_references: int | None = None


@dataclass(frozen=True)
class BlockPlan:
    block_queries: int
    block_references: int
    backend: str
    device: str
    tolerance: float


@dataclass
class SearchResult:
    """Ranks, per-positive counts and top-K of one search.

    positives: per query, the (deduplicated) positives sorted by canonical score,
    descending (ties by reference number); positive_scores aligned with it.
    above: aligned with positives, references strictly more similar than that positive
    (only the first of each row unless all_positives was asked for; -1 elsewhere).
    ranks: above of the best positive, or n_reference for a query without positives.
    """

    ranks: np.ndarray
    positives: CSR
    positive_scores: np.ndarray
    above: np.ndarray
    topk_indices: np.ndarray
    topk_scores: np.ndarray
    n_reference: int
    plan: BlockPlan


def pair_scores(query: np.ndarray, reference: np.ndarray, rows: np.ndarray,
                cols: np.ndarray) -> np.ndarray:
    """Canonical float64 scores of (query row, reference row) pairs, batched."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    out = np.empty(len(rows), dtype=np.float64)
    step = max(1, _PAIR_BATCH_BYTES // (16 * max(1, query.shape[1])))
    for s in range(0, len(rows), step):
        q = query[rows[s:s + step]].astype(np.float64)
        r = reference[cols[s:s + step]].astype(np.float64)
        q *= r  # products of float32 values are exact in float64
        out[s:s + step] = q.sum(axis=1)
    return out


def tolerance(query: np.ndarray, reference: np.ndarray) -> float:
    """Bound on |float32 GEMM score − canonical score|, with a wide safety margin.

    Measured errors for unit vectors stay below 0.3·√D·u; this uses 8·√D·u (at least
    64·u) times the largest norms, so only near-ties are re-scored.
    """
    d = query.shape[1]
    qn = _max_norm(query, "query")
    rn = _max_norm(reference, "reference")
    return max(8.0 * math.sqrt(d), 64.0) * _U32 * qn * rn


def _max_norm(x: np.ndarray, what: str, step: int = 8192) -> float:
    """Largest row norm; also the place where NaN/Inf descriptors are caught."""
    best = 0.0
    for s in range(0, x.shape[0], step):
        block = x[s:s + step].astype(np.float32, copy=False)
        sq = np.einsum("ij,ij->i", block, block)
        if not np.isfinite(sq).all():
            row = s + int(np.flatnonzero(~np.isfinite(sq))[0])
            raise DataError(f"{what} descriptor {row} contains NaN or Inf (or overflows "
                            f"float32); check the model output")
        best = max(best, float(np.sqrt(sq.max(initial=0.0))))
    return best * (1 + 1e-6)


def plan_blocks(n_query: int, n_reference: int, dim: int, options: SearchOptions,
                backend: str, device: str, tol: float, k: int = 0) -> BlockPlan:
    """Block sizes from the memory budget.

    A block costs 4 bytes per score (float32); comparison masks are cache-sized row
    tiles and top-K candidates are flushed at a bounded count, so 6 bytes per score are
    budgeted, plus per query row the top-K work (the first segment's selection, merge
    buffers: about 5·max(2K, 1024) + 64·K bytes), float32 copies of the descriptor
    blocks and a fixed 16 MB (at most a quarter) for tiles and re-scoring batches. References are split
    into at least ~8 blocks when large, so the running top-K threshold is refreshed often.
    """
    if options.memory_bytes <= 0:
        raise UsageError(f"memory budget must be positive, got {options.memory_bytes} bytes")
    per = 6
    desc_bytes = 4 * dim
    row_bytes = desc_bytes + ((5 * max(2 * k, 1024) + 64 * k) if k else 0)
    budget = max(1, options.memory_bytes - min(16 << 20, options.memory_bytes // 4))
    elems = max(1, budget // per)
    br = options.block_references or min(n_reference, max(2048, -(-n_reference // 8)),
                                         max(1, elems // max(1, min(n_query, 1024))))
    br = max(1, min(br, n_reference))
    rest = max(1, budget - br * desc_bytes)
    bq = options.block_queries or max(1, min(n_query, rest // (per * br + row_bytes)))
    bq = max(1, min(bq, n_query))
    return BlockPlan(int(bq), int(br), backend, device, float(tol))


def _resolve_backend(options: SearchOptions) -> tuple[str, str]:
    if options.backend not in ("auto", "numpy", "torch"):
        raise UsageError(f"unknown search backend {options.backend!r}; use auto, numpy or torch")
    if options.backend == "numpy":
        return "numpy", "cpu"
    import torch

    if options.backend == "torch":
        return "torch", options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if options.device is not None and options.device != "cpu":
        return "torch", options.device
    return ("torch", "cuda") if torch.cuda.is_available() else ("numpy", "cpu")


def search(query: np.ndarray, reference: np.ndarray, positives: CSR, *, k: int = 0,
           all_positives: bool = False, options: SearchOptions = SearchOptions(),
           progress: str = "searching") -> SearchResult:
    """Exact search: ranks of the best positive (and optionally of every positive) + top-K."""
    from geobench import _blocks

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
    plan = plan_blocks(nq, nr, dim, options, name, device, tol, k)
    above = np.zeros(thresholds.shape, dtype=np.int64)
    top_i = np.full((nq, k), -1, dtype=np.int64)
    top_s = np.full((nq, k), -np.inf, dtype=np.float32)
    engine = _blocks.make_engine(name, device, query, reference, plan, options.memory_bytes)
    n_blocks = -(-nq // plan.block_queries) * -(-nr // plan.block_references)
    with bar(progress, total=n_blocks) as handle:
        for q0 in range(0, nq, plan.block_queries):
            q1 = min(nq, q0 + plan.block_queries)
            _blocks.run_query_block(engine, q0, q1, thresholds[q0:q1], above[q0:q1],
                                    top_i[q0:q1], top_s[q0:q1], handle)
    has = lengths > 0
    ranks = np.where(has, above[:, 0], nr).astype(np.int64)
    flat_above = np.full(len(rows), -1, dtype=np.int64)
    flat_above[used] = above[rows[used], slot[used]]
    top_i, top_s = _sort_topk(top_i, top_s)
    return SearchResult(ranks, pos, scores, flat_above, top_i, top_s, nr, plan)


def _sort_topk(idx: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order each row by score descending, ties by reference number."""
    if idx.shape[1] == 0:
        return idx, scores
    order = np.lexsort((idx, -scores.astype(np.float64)), axis=1)
    return np.take_along_axis(idx, order, 1), np.take_along_axis(scores, order, 1)

