"""Compiled per-block pass of the CPU search (numba): compare and extract in one pass.

Imported only when a search runs with the compiled passes, so `import geobench` and the
CLI never load numba or compile anything. The kernel is compiled on first use and cached
on disk (numba keeps the cache beside this file, or in the user's cache directory when
the install is read-only; `NUMBA_CACHE_DIR` overrides both).

Each row of a block of float32 scores is read once, in chunks of 32 scores tested
together (the test vectorises): a branch-free count of the scores clearly above the best
positive's band (> hi), and a flag for the few scores that matter otherwise, those inside
the band (lo <= s <= hi, listed for exact re-scoring by the caller) and those above the
row's top-K threshold (appended to the row's candidate buffer, which is cut back to its
K best by a selection when it fills, raising the threshold). Only flagged chunks are read
again. Other positives of a row (all_positives) get their own pass over the row while it
is still in cache.
"""
from __future__ import annotations

import numpy as np
from numba import njit


def _jit(fn):
    try:
        return njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # no writable cache location at all: compile once per process
        return njit(nogil=True)(fn)


@_jit
def _kth_largest(buf, n, k):
    """The k-th largest (k >= 1) of buf[:n]; buf is reordered (quickselect)."""
    lo, hi, target = 0, n - 1, k - 1
    while lo < hi:
        a, b, c = buf[lo], buf[(lo + hi) // 2], buf[hi]
        pivot = max(min(a, b), min(max(a, b), c))  # median of three
        i, j = lo, hi
        while i <= j:
            while buf[i] > pivot:
                i += 1
            while buf[j] < pivot:
                j -= 1
            if i <= j:
                buf[i], buf[j] = buf[j], buf[i]
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            return buf[target]
    return buf[target]


@_jit
def _prune_row(vals, idx, k, n, scratch):
    """Cut slots [0, n) of one row back to its k best, in slot (= reference) order; ties
    at the k-th value keep the leftmost. Returns the k-th best (the new threshold)."""
    scratch[:n] = vals[:n]
    t = _kth_largest(scratch, n, k)
    above = 0
    for i in range(n):
        if vals[i] > t:
            above += 1
    ties = k - above  # slots equal to t that stay: the leftmost ones
    w = 0
    for i in range(n):
        v = vals[i]
        if v > t:
            pass
        elif v == t and ties > 0:
            ties -= 1
        else:
            continue
        vals[w] = v
        idx[w] = idx[i]
        w += 1
    for i in range(w, n):
        vals[i] = -np.inf
        idx[i] = -1
    return t


@_jit
def _grow(a, n):
    b = np.empty(2 * a.shape[0], a.dtype)
    b[:n] = a[:n]
    return b


_CHUNK = 32  # scores tested together: the test vectorises, hits are rare
_SEGMENT = 1024  # columns listed against one threshold before it is brought up to date


@_jit
def _scan(row, a0, b0, lo, hi, t, hits):
    """Over columns [a0, b0) of a row: count the scores > hi (branch-free) and list in
    `hits` the columns of those inside [lo, hi] or above t; returns (count, hits).
    Chunks of _CHUNK scores are tested at once; only a chunk holding a hit is read again
    (branch-free too: every column is written, only hits advance)."""
    cnt = 0
    m = 0
    end = b0 - (b0 - a0) % _CHUNK
    for a in range(a0, end, _CHUNK):
        flag = 0
        for c in range(a, a + _CHUNK):
            x = row[c]
            cnt += x > hi
            flag |= (x > t) | ((x >= lo) & (x <= hi))
        if flag:
            for a8 in range(a, a + _CHUNK, 8):
                sub = 0
                for c in range(a8, a8 + 8):
                    x = row[c]
                    sub |= (x > t) | ((x >= lo) & (x <= hi))
                if sub:
                    for c in range(a8, a8 + 8):  # branch-free: write always, keep hits
                        x = row[c]
                        hits[m] = c
                        m += (x > t) | ((x >= lo) & (x <= hi))
    for c in range(end, b0):
        x = row[c]
        cnt += x > hi
        hits[m] = c
        m += (x > t) | ((x >= lo) & (x <= hi))
    return cnt, m


@_jit
def _count_above(row, a, b, hi):
    cnt = 0
    for c in range(a, b):
        cnt += row[c] > hi
    return cnt


@_jit
def block_pass(s, c0, lo, hi, live, above, k, vals, idx, fill, thr):
    """One block of scores s (rows x width, C order); c0: reference number of column 0.

    lo, hi (rows x m, float32): band edges per positive slot; live: the slots to count;
    above (rows x m, int64): incremented in place. k > 0: the top-K candidate buffers
    (`geobench.eval.blocks.TopK`: vals, idx per row slot in reference order, fill, thr)
    are updated in place, a row cut back to its K best when its buffer is full. Returns
    the band members as arrays (row, column, slot), columns within the block."""
    n, w = s.shape
    cap = vals.shape[1]
    scratch = np.empty(cap, np.float32)
    hits = np.empty(w, np.int64)
    inband = np.empty(w, np.int64)
    size = 256
    band_r = np.empty(size, np.int64)
    band_c = np.empty(size, np.int64)
    band_j = np.empty(size, np.int64)
    nb = 0
    inf = np.float32(np.inf)
    for r in range(n):
        row = s[r]
        for jj in range(max(1, len(live))):
            j = live[jj] if len(live) else 0
            top = k > 0 and jj == 0  # the top-K candidates ride on the first slot's pass
            lj = lo[r, j] if len(live) else inf
            hj = hi[r, j] if len(live) else inf
            f = fill[r] if top else k
            t = thr[r] if top else inf
            # a heap not yet full takes its first columns as they come; the rest of the
            # row is then tested against its worst
            # hits are listed against the threshold at the scan's start; when a cut-back
            # raises it, the rest of the row is scanned again with the new one
            nr_band = 0  # band columns of this row and slot, appended after the pass
            start = 0
            counted = 0  # columns [0, counted) are in `above` already
            while start < w:
                stop = min(w, start + _SEGMENT)
                cnt, m = _scan(row, start, stop, lj, hj, t, hits)
                if counted > start:
                    cnt -= _count_above(row, start, min(counted, stop), hj)
                if len(live):
                    above[r, j] += cnt
                counted = max(counted, stop)
                start = stop
                for i in range(m):
                    c = hits[i]
                    x = row[c]
                    if x >= lj and x <= hj:
                        inband[nr_band] = c
                        nr_band += 1
                    if top and x > t:
                        raised = f == cap
                        if raised:
                            t = _prune_row(vals[r], idx[r], k, f, scratch)
                            f = k
                        if x > t:
                            vals[r, f] = x
                            idx[r, f] = c0 + c
                            f += 1
                        if raised and i + 1 < m:
                            start = c + 1
                            break
            if top:
                fill[r] = f
                thr[r] = t
            if nr_band:  # (growing arrays inside the hit loop would slow it several times)
                while nb + nr_band > size:
                    band_r = _grow(band_r, nb)
                    band_c = _grow(band_c, nb)
                    band_j = _grow(band_j, nb)
                    size *= 2
                band_r[nb:nb + nr_band] = r
                band_c[nb:nb + nr_band] = inband[:nr_band]
                band_j[nb:nb + nr_band] = j
                nb += nr_band
    return band_r[:nb], band_c[:nb], band_j[:nb]
