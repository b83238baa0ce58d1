"""Per-block work of `geobench.eval.search.search`: one product, then cheap passes.

Two engines share one driver: numpy (BLAS product, comparison passes into reused
buffers, threshold-filtered top-K) for the CPU, and torch for a GPU (product, counts and
per-block top-K on the device; only small arrays come back).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from geobench.eval.plan import BlockPlan, pair_scores


class NumpyEngine:
    """CPU engine. Every pass over a score block runs over row tiles that fit in cache,
    so the block is read from memory about once per pass group, not once per test."""

    tile_bytes = 1 << 20

    def __init__(self, query: np.ndarray, reference: np.ndarray, plan: BlockPlan,
                 memory_bytes: int) -> None:
        self.query, self.reference, self.plan = query, reference, plan
        self._scores = np.empty(plan.block_queries * plan.block_references, dtype=np.float32)
        self.tile_rows = max(8, self.tile_bytes // (4 * plan.block_references))
        self._m1 = np.empty(self.tile_rows * _pad8(plan.block_references), dtype=bool)
        self._m2 = np.empty_like(self._m1)
        self.max_pairs = max(4096, memory_bytes // 64)  # buffered top-K candidates

    def queries(self, q0: int, q1: int) -> np.ndarray:
        return np.ascontiguousarray(self.query[q0:q1], dtype=np.float32)

    def scores(self, qb: np.ndarray, r0: int, r1: int) -> np.ndarray:
        rb = np.ascontiguousarray(self.reference[r0:r1], dtype=np.float32)
        out = self._scores[:qb.shape[0] * (r1 - r0)].reshape(qb.shape[0], r1 - r0)
        np.matmul(qb, rb.T, out=out)
        return out

    def process(self, s: np.ndarray, r0: int, ranks: _Ranks, top_i: np.ndarray,
                top_s: np.ndarray) -> None:
        k = top_i.shape[1]
        if not k:
            self._pass(s, 0, 0, ranks, None, None)
            return
        if r0 > 0:  # one fused pass: rank counts and the top-K filter
            self._pass(s, 0, r0, ranks, top_i, top_s)
            return
        # First block: full selection on a small segment, then doubling segments so the
        # running K-th best tightens quickly and few candidates reach each merge.
        a = min(s.shape[1], max(2 * k, 1024))
        _dense_merge(s[:, :a], 0, top_i, top_s)
        self._pass(s, 0, 0, ranks, None, None)
        while a < s.shape[1]:
            b = min(s.shape[1], 2 * a)
            self._pass(s[:, a:b], a, a, None, top_i, top_s)
            a = b

    def _cmp(self, buf: np.ndarray, op: Any, s: np.ndarray, thr: np.ndarray) -> np.ndarray:
        """Comparison into a reused mask; rows padded to whole 8-byte words (False)."""
        n, w = s.shape
        mask = buf[:n * _pad8(w)].reshape(n, _pad8(w))
        mask[:, w:] = False
        op(s, thr[:, None], out=mask[:, :w])
        return mask

    def _pass(self, s: np.ndarray, local0: int, c0: int, ranks: _Ranks | None,
              top_i: np.ndarray | None, top_s: np.ndarray | None) -> None:
        """Rank counts (and band re-scoring) and/or the top-K filter, tile by tile.

        local0: column of s[:, 0] within the block (band columns); c0: reference number
        of s[:, 0] (top-K candidates)."""
        n = s.shape[0]
        thr = top_s.min(axis=1) if top_s is not None else None  # rows are unordered
        buffered: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        pending = 0
        for t0 in range(0, n, self.tile_rows):
            t1 = min(n, t0 + self.tile_rows)
            tile = s[t0:t1]
            if ranks is not None:
                for j in ranks.live:
                    self._count_tile(tile, t0, t1, local0, ranks, j)
            if thr is not None:
                mask = self._cmp(self._m1, np.greater, tile, thr[t0:t1])
                r, c = _flat_nonzero(mask)
                if len(r):
                    buffered.append((r + t0, c + c0, tile[r, c]))
                    pending += len(r)
                    if pending > self.max_pairs:
                        _flush(buffered, top_i, top_s)
                        thr = top_s.min(axis=1)
                        buffered, pending = [], 0
        if buffered:
            _flush(buffered, top_i, top_s)


    def _count_tile(self, tile: np.ndarray, t0: int, t1: int, local0: int, ranks: _Ranks,
                    j: int) -> None:
        """Add to each row the scores clearly above its threshold (> hi); re-score the
        band lo <= score <= hi exactly. Usually few scores reach lo (good queries), and
        then they are looked at one by one instead of in a second full comparison."""
        lo = self._cmp(self._m2, np.greater_equal, tile, ranks.lo[t0:t1, j])
        total = np.count_nonzero(lo)
        if total == 0:
            return
        if total * 16 <= lo.size:
            r, c = _flat_nonzero(lo)
            inside = tile[r, c] <= ranks.hi[r + t0, j]
            ranks.above[t0:t1, j] += np.bincount(r[~inside], minlength=t1 - t0)
            band_r, band_c = r[inside], c[inside]
        else:
            hi = self._cmp(self._m1, np.greater, tile, ranks.hi[t0:t1, j])
            ranks.above[t0:t1, j] += _row_counts(hi)
            band_r, band_c = _flat_nonzero(np.greater(lo, hi))  # lo <= score <= hi
        if len(band_r):
            ranks.resolve(band_r + t0, band_c + local0, j)


def _flush(buffered: list, top_i: np.ndarray, top_s: np.ndarray) -> None:
    rows, cols, vals = (np.concatenate(x) for x in zip(*buffered, strict=True))
    _sparse_merge(rows, cols, vals, top_i, top_s)


def _flat_nonzero(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of the True entries of a sparse C-contiguous 2-D bool mask
    (flatnonzero is several times faster than a 2-D nonzero)."""
    flat = np.flatnonzero(mask)
    return flat // mask.shape[1], flat % mask.shape[1]


def _pad8(n: int) -> int:
    return -(-n // 8) * 8


_B8 = np.uint64(0x00FF00FF00FF00FF)
_B16 = np.uint64(0x0000FFFF0000FFFF)
_B32 = np.uint64(0xFFFFFFFF)


def _row_counts(mask: np.ndarray) -> np.ndarray:
    """True per row of a word-padded bool mask, 8 bytes per uint64 operation: the bytes
    are split into two sets of 16-bit lanes (no overflow below 65,536 words per row),
    summed along the row, then the lanes are added up."""
    words = mask.view(np.uint64)
    if words.shape[1] >= 1 << 16:
        return np.count_nonzero(mask, axis=1).astype(np.int64)
    v = np.add.reduce(words & _B8, axis=1) + np.add.reduce((words >> np.uint64(8)) & _B8, axis=1)
    v = (v & _B16) + ((v >> np.uint64(16)) & _B16)
    return ((v & _B32) + (v >> np.uint64(32))).astype(np.int64)


class TorchEngine:
    def __init__(self, query: np.ndarray, reference: np.ndarray, plan: BlockPlan,
                 memory_bytes: int) -> None:
        import torch

        self.torch, self.query, self.reference, self.plan = torch, query, reference, plan
        self.device = torch.device(plan.device)
        self.group_elems = max(plan.block_references, memory_bytes // 32)

    def _tensor(self, x: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(x)).to(self.device).float()

    def queries(self, q0: int, q1: int) -> Any:
        return self._tensor(self.query[q0:q1])

    def scores(self, qb: Any, r0: int, r1: int) -> Any:
        torch = self.torch
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False  # TF32 would void the rounding bound
        try:
            return qb @ self._tensor(self.reference[r0:r1]).T
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32

    def process(self, s: Any, r0: int, ranks: _Ranks, top_i: np.ndarray,
                top_s: np.ndarray) -> None:
        torch = self.torch
        for j in ranks.live:
            hi = torch.from_numpy(ranks.hi[:, j]).to(self.device)[:, None]
            lo = torch.from_numpy(ranks.lo[:, j]).to(self.device)[:, None]
            n_hi = (s > hi).sum(dim=1).cpu().numpy().astype(np.int64)
            n_lo = (s >= lo).sum(dim=1).cpu().numpy().astype(np.int64)
            ranks.above[:, j] += n_hi
            amb = np.flatnonzero(n_lo > n_hi)
            if len(amb):
                rows, cols = self.band(s, amb, ranks.lo[amb, j], ranks.hi[amb, j])
                ranks.resolve(rows, cols, j)
        if top_i.shape[1]:
            k = min(top_i.shape[1], s.shape[1])
            vals, idx = torch.topk(s, k, dim=1)
            _dense_merge_arrays(vals.cpu().numpy(), idx.cpu().numpy() + r0, top_i, top_s)

    def band(self, s: Any, rows: np.ndarray, lo: np.ndarray,
             hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        step = max(1, self.group_elems // max(1, s.shape[1]))
        out_r, out_c = [], []
        for g in range(0, len(rows), step):
            idx = torch.from_numpy(rows[g:g + step]).to(self.device)
            sub = s.index_select(0, idx)
            low = torch.from_numpy(lo[g:g + step]).to(self.device)[:, None]
            high = torch.from_numpy(hi[g:g + step]).to(self.device)[:, None]
            r, c = torch.nonzero((sub >= low) & (sub <= high), as_tuple=True)
            out_r.append(rows[g:g + step][r.cpu().numpy()])
            out_c.append(c.cpu().numpy())
        return np.concatenate(out_r), np.concatenate(out_c)


def make_engine(name: str, device: str, query: np.ndarray, reference: np.ndarray,
                plan: BlockPlan, memory_bytes: int) -> NumpyEngine | TorchEngine:
    cls = NumpyEngine if name == "numpy" else TorchEngine
    return cls(query, reference, plan, memory_bytes)


class _Ranks:
    """Per query block: thresholds (canonical positive scores), their ±tol band in
    float32, the counts being accumulated, and exact re-scoring of band members."""

    def __init__(self, engine: Any, q0: int, thresholds: np.ndarray, above: np.ndarray,
                 tied: np.ndarray) -> None:
        tol = engine.plan.tolerance
        self.engine, self.q0, self.thresholds, self.above = engine, q0, thresholds, above
        self.tied = tied
        self.lo = np.ascontiguousarray((thresholds - tol).astype(np.float32))
        self.hi = np.ascontiguousarray((thresholds + tol).astype(np.float32))
        self.live = [j for j in range(thresholds.shape[1]) if np.isfinite(thresholds[:, j]).any()]
        self.r0 = 0
        self.rescoring = 0.0  # seconds in exact re-scoring of band members

    def resolve(self, rows: np.ndarray, cols: np.ndarray, j: int) -> None:
        start = time.perf_counter()
        self._resolve(rows, cols, j)
        self.rescoring += time.perf_counter() - start

    def _resolve(self, rows: np.ndarray, cols: np.ndarray, j: int) -> None:
        """Count band members (block rows/columns) whose canonical score is above, and
        those exactly equal (the threshold's own positive included): every exact tie
        lies inside the band, so both counts are exact."""
        exact = pair_scores(self.engine.query, self.engine.reference, rows + self.q0,
                            cols + self.r0)
        thr = self.thresholds[rows, j]
        np.add.at(self.above[:, j], rows, exact > thr)
        np.add.at(self.tied[:, j], rows, exact == thr)


def run_query_block(engine: Any, q0: int, q1: int, thresholds: np.ndarray, above: np.ndarray,
                    tied: np.ndarray, top_i: np.ndarray, top_s: np.ndarray,
                    handle: Any) -> None:
    """Count references above (and tied with) each threshold and update the top-K,
    block by block."""
    plan = engine.plan
    nr = engine.reference.shape[0]
    ranks = _Ranks(engine, q0, thresholds, above, tied)
    qb = engine.queries(q0, q1)
    # per-phase seconds (the benchmark reports them; a few clock reads per block)
    phases = engine.__dict__.setdefault("phases", {"products": 0.0, "passes": 0.0,
                                                   "rescoring": 0.0})
    for r0 in range(0, nr, plan.block_references):
        r1 = min(nr, r0 + plan.block_references)
        t0 = time.perf_counter()
        s = engine.scores(qb, r0, r1)
        t1 = time.perf_counter()
        ranks.r0 = r0
        engine.process(s, r0, ranks, top_i, top_s)
        phases["products"] += t1 - t0
        phases["passes"] += time.perf_counter() - t1
        del s
        handle.advance()
    phases["passes"] -= ranks.rescoring
    phases["rescoring"] += ranks.rescoring


def _keep(vals: np.ndarray, k: int) -> np.ndarray:
    """Mask of the k largest values of each row (k <= row length); ties: leftmost kept.

    A selection per row (np.partition, linear time; no full sort) gives the k-th largest
    value t; keep everything >= t and, in the rare rows with extra ties at t, drop the
    rightmost.
    """
    col = vals.shape[1] - k
    t = np.partition(vals, col, axis=1)[:, col]
    keep = vals >= t[:, None]
    extra = np.count_nonzero(keep, axis=1) - k
    rows = np.flatnonzero(extra)
    if len(rows):
        tied = vals[rows] == t[rows, None]
        from_right = np.cumsum(tied[:, ::-1], axis=1)[:, ::-1]
        keep[rows] &= ~(tied & (from_right <= extra[rows, None]))
    return keep


def _select(vals: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest values per row with their indices, unordered."""
    if vals.shape[1] <= k:
        return vals, idx
    keep = _keep(vals, k)
    return vals[keep].reshape(len(vals), k), idx[keep].reshape(len(vals), k)


def _dense_merge(seg: np.ndarray, c0: int, top_i: np.ndarray, top_s: np.ndarray) -> None:
    n, w = seg.shape
    k = top_i.shape[1]
    if np.isneginf(top_s).all():  # the first segment: nothing to merge with yet
        kk = min(k, w)
        keep = _keep(seg, kk)
        top_s[:, :kk] = seg[keep].reshape(n, kk)
        top_i[:, :kk] = np.nonzero(keep)[1].reshape(n, kk) + c0
        return
    cols = np.broadcast_to(np.arange(c0, c0 + w, dtype=np.int64), seg.shape)
    _dense_merge_arrays(seg, cols, top_i, top_s)


def _dense_merge_arrays(vals: np.ndarray, idx: np.ndarray, top_i: np.ndarray,
                        top_s: np.ndarray) -> None:
    k = top_i.shape[1]
    all_s = np.concatenate([top_s, vals], axis=1)
    all_i = np.concatenate([top_i, idx], axis=1)
    top_s[...], top_i[...] = _select(all_s, all_i, k)


def _sparse_merge(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, top_i: np.ndarray,
                  top_s: np.ndarray) -> None:
    """Merge row-sorted (row, column, score) candidates into the running top-K."""
    k = top_i.shape[1]
    counts = np.bincount(rows, minlength=top_i.shape[0])
    sel = np.flatnonzero(counts)
    width = k + int(counts.max())
    pad_s = np.full((len(sel), width), -np.inf, dtype=np.float32)
    pad_i = np.full((len(sel), width), -1, dtype=np.int64)
    pad_s[:, :k] = top_s[sel]
    pad_i[:, :k] = top_i[sel]
    where = np.empty(top_i.shape[0], dtype=np.int64)
    where[sel] = np.arange(len(sel))
    starts = np.cumsum(counts) - counts
    slot = k + np.arange(len(rows)) - starts[rows]
    pad_s[where[rows], slot] = vals
    pad_i[where[rows], slot] = cols
    top_s[sel], top_i[sel] = _select(pad_s, pad_i, k)
