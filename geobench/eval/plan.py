"""How a search is cut into blocks, and the canonical pair scores that make it exact.

See `geobench.eval.search` for why the canonical float64 score and the rounding band
`tolerance` make ranks independent of the block plan, backend and device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from geobench.errors import DataError, UsageError

_U32 = 2.0 ** -24  # float32 unit round-off
_PAIR_BATCH_BYTES = 4 << 20  # float64 gathers for canonical re-scoring (reused, cache-sized)


@dataclass(frozen=True)
class SearchOptions:
    """How to search. `memory_bytes` bounds working memory beyond the descriptors."""

    memory_bytes: int = 2 << 30
    backend: str = "auto"  # auto (torch on CUDA when present, else numpy) | numpy | torch
    device: str | None = None  # torch device for backend="torch"
    block_queries: int | None = None  # explicit block sizes (tests, benchmarks)
    block_references: int | None = None
    # CPU passes after each product: auto (numba when installed) | numba | numpy
    passes: str = "auto"


@dataclass(frozen=True)
class BlockPlan:
    block_queries: int
    block_references: int
    backend: str
    device: str
    tolerance: float
    passes: str = "numpy"  # numba | numpy on the numpy backend; torch on torch


def pair_scores(query: np.ndarray, reference: np.ndarray, rows: np.ndarray,
                cols: np.ndarray) -> np.ndarray:
    """Canonical float64 scores of (query row, reference row) pairs, batched."""
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    out = np.empty(len(rows), dtype=np.float64)
    step = max(1, _PAIR_BATCH_BYTES // (16 * max(1, query.shape[1])))
    for s in range(0, len(rows), step):
        q = take_rows(query, rows[s:s + step]).astype(np.float64)
        r = take_rows(reference, cols[s:s + step]).astype(np.float64)
        q *= r  # products of float32 values are exact in float64
        out[s:s + step] = q.sum(axis=1)
    return out


def take_rows(x, idx: np.ndarray) -> np.ndarray:
    """x[idx] for an array or a row-sliceable on-disk dataset (h5py reads only sorted,
    unique rows, so those are read once each and expanded)."""
    if isinstance(x, np.ndarray):
        return x[idx]
    if len(idx) == 0:
        return np.empty((0, x.shape[1]), dtype=x.dtype)
    uniq, inverse = np.unique(idx, return_inverse=True)
    return x[uniq][inverse]


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
                backend: str, device: str, tol: float, k: int = 0,
                workers: int = 1, passes: str = "numpy") -> BlockPlan:
    """Block sizes from the memory budget, shared by `workers` searching side by side
    (each gets its own blocks and at least one query block).

    A block costs 4 bytes per score (float32); comparison masks are cache-sized row
    tiles, so 6 bytes per score are budgeted, plus per query row the top-K work (the
    first segment's selection and the candidate buffer of 4·K slots: about
    5·max(2K, 1024) + 64·K bytes), float32 copies of the descriptor
    blocks and a fixed 16 MB (at most a quarter) for tiles and re-scoring batches. References are split
    into at least ~8 blocks when large, so the running top-K threshold is refreshed often.
    """
    if options.memory_bytes <= 0:
        raise UsageError(f"memory budget must be positive, got {options.memory_bytes} bytes")
    per = 6
    desc_bytes = 4 * dim
    row_bytes = desc_bytes + ((5 * max(2 * k, 1024) + 64 * k) if k else 0)
    memory = options.memory_bytes // max(1, workers)
    budget = max(1, memory - min(16 << 20, memory // 4))
    elems = max(1, budget // per)
    br = options.block_references or min(n_reference, max(2048, -(-n_reference // 8)),
                                         max(1, elems // max(1, min(n_query, 1024))))
    br = max(1, min(br, n_reference))
    rest = max(1, budget - br * desc_bytes)
    bq = options.block_queries or min(rest // (per * br + row_bytes),
                                      -(-n_query // max(1, workers)))
    bq = max(1, min(bq, n_query))
    return BlockPlan(int(bq), int(br), backend, device, float(tol), passes)


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
