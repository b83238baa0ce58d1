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
    """CPU engine. A block is read in row tiles that fit in cache; per tile ONE
    comparison with each row's lowest threshold (the rank band's lower edge or the
    running K-th best) marks the few scores anything needs, and the rest of the work
    runs on those alone."""

    tile_bytes = 1 << 20

    def __init__(self, query: np.ndarray, reference: np.ndarray, plan: BlockPlan,
                 memory_bytes: int) -> None:
        self.query, self.reference, self.plan = query, reference, plan
        self._scores = np.empty(plan.block_queries * plan.block_references, dtype=np.float32)
        self.tile_rows = max(8, self.tile_bytes // (4 * plan.block_references))
        self._m1 = np.empty(self.tile_rows * _pad8(plan.block_references), dtype=bool)
        self._m2 = np.empty_like(self._m1)
        self.top = TopK(0, 0)

    def begin(self, n: int, k: int) -> TopK:
        self.top = TopK(n, k)
        return self.top

    def queries(self, q0: int, q1: int) -> np.ndarray:
        return np.ascontiguousarray(self.query[q0:q1], dtype=np.float32)

    def scores(self, qb: np.ndarray, r0: int, r1: int) -> np.ndarray:
        rb = np.ascontiguousarray(self.reference[r0:r1], dtype=np.float32)
        out = self._scores[:qb.shape[0] * (r1 - r0)].reshape(qb.shape[0], r1 - r0)
        np.matmul(qb, rb.T, out=out)
        return out

    def process(self, s: np.ndarray, r0: int, ranks: _Ranks) -> None:
        top = self.top
        if not top.k:
            self._pass(s, 0, ranks, None)
        elif r0 > 0 or top.full:
            self._pass(s, r0, ranks, top)
        else:
            # First block: a full selection on a small segment gives every row a K-th best
            # to filter the rest of the block with
            a = min(s.shape[1], max(2 * top.k, 1024))
            top.set_first(s[:, :a])
            self._pass(s[:, :a], 0, ranks, None)
            if a < s.shape[1]:
                self._pass(s[:, a:], a, ranks, top, local0=a)
        if top.k:
            top.refresh()

    def _cmp(self, buf: np.ndarray, op: Any, s: np.ndarray, thr: np.ndarray) -> np.ndarray:
        """Comparison into a reused mask; rows padded to whole 8-byte words (False)."""
        n, w = s.shape
        mask = buf[:n * _pad8(w)].reshape(n, _pad8(w))
        mask[:, w:] = False
        op(s, thr[:, None], out=mask[:, :w])
        return mask

    def _pass(self, s: np.ndarray, c0: int, ranks: _Ranks, top: TopK | None,
              local0: int = 0) -> None:
        """Rank counts (with band re-scoring) and top-K candidates, tile by tile.

        c0: reference number of s[:, 0]; local0: its column within the block."""
        n = s.shape[0]
        live = ranks.live
        first = live[0] if live and live[0] == 0 else None  # fused with the top-K filter
        for t0 in range(0, n, self.tile_rows):
            t1 = min(n, t0 + self.tile_rows)
            tile = s[t0:t1]
            for j in live:
                if j != first or top is None:
                    self._count_tile(tile, t0, t1, local0, ranks, j)
            if top is None:
                continue
            if first is None:
                self._topk_tile(tile, t0, t1, c0, top)
                continue
            lo = ranks.lo[t0:t1, 0]
            low = np.minimum(lo, top.thr[t0:t1])
            mask = self._cmp(self._m1, np.greater_equal, tile, low)
            total = np.count_nonzero(mask)
            if total * 16 > mask.size:  # many rows rank their positive low: dense passes
                self._count_tile(tile, t0, t1, local0, ranks, 0)
                self._topk_tile(tile, t0, t1, c0, top)
                continue
            if not total:
                continue
            r, c, v = _sparse(mask, tile)
            sel = v >= lo[r]
            if sel.any():
                self._count_sparse(r[sel], c[sel], v[sel], t0, t1, local0, ranks, 0)
            cand = v > top.thr[r + t0]
            if cand.any():
                top.add(r[cand] + t0, c[cand] + c0, v[cand])

    def _topk_tile(self, tile: np.ndarray, t0: int, t1: int, c0: int, top: TopK) -> None:
        mask = self._cmp(self._m1, np.greater, tile, top.thr[t0:t1])
        if np.count_nonzero(mask):
            r, c, v = _sparse(mask, tile)
            top.add(r + t0, c + c0, v)

    def _count_sparse(self, r: np.ndarray, c: np.ndarray, v: np.ndarray, t0: int, t1: int,
                      local0: int, ranks: _Ranks, j: int) -> None:
        """Counts from the scores >= lo of a tile: above hi counted, the band re-scored."""
        inside = v <= ranks.hi[r + t0, j]
        ranks.above[t0:t1, j] += np.bincount(r[~inside], minlength=t1 - t0)
        if inside.any():
            ranks.resolve(r[inside] + t0, c[inside] + local0, j)

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
            r, c, v = _sparse(lo, tile)
            self._count_sparse(r, c, v, t0, t1, local0, ranks, j)
            return
        hi = self._cmp(self._m1, np.greater, tile, ranks.hi[t0:t1, j])
        ranks.above[t0:t1, j] += _row_counts(hi)
        band_r, band_c = _flat_nonzero(np.greater(lo, hi))  # lo <= score <= hi
        if len(band_r):
            ranks.resolve(band_r + t0, band_c + local0, j)


class TopK:
    """Running top-K per query row, pruned lazily.

    Candidates (scores above the row's threshold `thr`, a lower bound of its K-th best)
    are appended to a buffer of `capacity` slots per row in reference order; a row is cut
    back to its K best only when its buffer fills (or, after a block, is half full), which
    also raises its threshold. Most rows are thus selected a few times per search, not
    once per block. Ties at the K-th score keep the smaller reference number: slots hold
    candidates in reference order and the selection keeps the leftmost.
    """

    def __init__(self, n: int, k: int) -> None:
        self.k = k
        self.capacity = max(4 * k, k + 64) if k else 0
        self.vals = np.full((n, self.capacity), -np.inf, dtype=np.float32)
        self.idx = np.full((n, self.capacity), -1, dtype=np.int64)
        self.fill = np.zeros(n, dtype=np.int64)
        self.thr = np.full(n, -np.inf, dtype=np.float32)
        self.full = False  # every row has k real candidates (thr is finite)

    def set_first(self, seg: np.ndarray) -> None:
        """The K best of the first columns (reference numbers 0..)."""
        n, w = seg.shape
        kk = min(self.k, w)
        keep = _keep(seg, kk)
        self.vals[:, :kk] = seg[keep].reshape(n, kk)
        self.idx[:, :kk] = np.nonzero(keep)[1].reshape(n, kk)
        self.fill[:] = kk
        if kk == self.k:
            self.thr[:] = self.vals[:, :kk].min(axis=1)
            self.full = True

    def add(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        """Append candidates; rows ascending, columns ascending within a row."""
        n = len(self.fill)
        counts = np.bincount(rows, minlength=n)
        over = np.flatnonzero(self.fill + counts > self.capacity)
        if len(over):
            self._prune(over)
            wide = over[self.fill[over] + counts[over] > self.capacity]
            if len(wide):  # more candidates than slots: select them with the K best
                take = np.isin(rows, wide)
                self._merge_wide(rows[take], cols[take], vals[take], counts)
                rows, cols, vals = rows[~take], cols[~take], vals[~take]
                counts[wide] = 0
        starts = np.cumsum(counts) - counts
        pos = rows * self.capacity + self.fill[rows] + (np.arange(len(rows)) - starts[rows])
        self.vals.reshape(-1)[pos] = vals
        self.idx.reshape(-1)[pos] = cols
        self.fill += counts

    def refresh(self) -> None:
        """After a block: cut back the rows whose buffer is half full (fresh thresholds)."""
        rows = np.flatnonzero(self.fill > (self.k + self.capacity) // 2)
        if len(rows):
            self._prune(rows)

    def result(self, top_i: np.ndarray, top_s: np.ndarray) -> None:
        rows = np.flatnonzero(self.fill > self.k)
        if len(rows):
            self._prune(rows)
        top_s[...] = self.vals[:, :self.k]
        top_i[...] = self.idx[:, :self.k]

    def _prune(self, rows: np.ndarray) -> None:
        width = int(self.fill[rows].max())
        vals, idx = self.vals[rows, :width], self.idx[rows, :width]
        if width > self.k:
            vals, idx = _select(vals, idx, self.k)
        self._store(rows, vals, idx)

    def _merge_wide(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray,
                    counts: np.ndarray) -> None:
        sel = np.unique(rows)
        width = self.k + int(counts[sel].max())
        pad_s = np.full((len(sel), width), -np.inf, dtype=np.float32)
        pad_i = np.full((len(sel), width), -1, dtype=np.int64)
        pad_s[:, :self.k] = self.vals[sel, :self.k]
        pad_i[:, :self.k] = self.idx[sel, :self.k]
        where = np.empty(len(self.fill), dtype=np.int64)
        where[sel] = np.arange(len(sel))
        c = counts[sel]
        starts = np.repeat(np.cumsum(c) - c, c)
        slot = self.k + np.arange(len(rows)) - starts
        pad_s[where[rows], slot] = vals
        pad_i[where[rows], slot] = cols
        self._store(sel, *_select(pad_s, pad_i, self.k))

    def _store(self, rows: np.ndarray, vals: np.ndarray, idx: np.ndarray) -> None:
        w = vals.shape[1]
        self.vals[rows, :w], self.idx[rows, :w] = vals, idx
        self.vals[rows, w:], self.idx[rows, w:] = -np.inf, -1
        self.fill[rows] = w
        if w == self.k:
            self.thr[rows] = vals.min(axis=1)
            self.full = self.full or bool(np.isfinite(self.thr).all())


def _sparse(mask: np.ndarray, tile: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, score) of the True entries of a sparse word-padded mask over a tile."""
    flat = np.flatnonzero(mask)
    width = mask.shape[1]
    r = flat // width
    c = flat - r * width
    if width == tile.shape[1] and tile.flags.c_contiguous:
        return r, c, tile.reshape(-1)[flat]
    return r, c, tile[r, c]


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

    def begin(self, n: int, k: int) -> TopK:
        self.top = TopK(n, k)
        return self.top

    def process(self, s: Any, r0: int, ranks: _Ranks) -> None:
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
        if self.top.k:
            k = min(self.top.k, s.shape[1])
            vals, idx = torch.topk(s, k, dim=1)
            idx, order = idx.sort(dim=1)  # reference order within a row (see TopK)
            vals = vals.gather(1, order)
            n = s.shape[0]
            self.top.add(np.repeat(np.arange(n), k), idx.cpu().numpy().reshape(-1) + r0,
                         vals.cpu().numpy().reshape(-1))

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
    """Count references above (and tied with) each threshold and find the top-K,
    block by block."""
    plan = engine.plan
    nr = engine.reference.shape[0]
    ranks = _Ranks(engine, q0, thresholds, above, tied)
    top = engine.begin(q1 - q0, top_i.shape[1])
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
        engine.process(s, r0, ranks)
        phases["products"] += t1 - t0
        phases["passes"] += time.perf_counter() - t1
        del s
        handle.advance()
    t0 = time.perf_counter()
    top.result(top_i, top_s)
    phases["passes"] += time.perf_counter() - t0
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
