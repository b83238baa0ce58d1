"""Compiled per-block pass of the CPU search (numba): compare and extract in one pass.

Imported only when a search runs with the compiled passes, so `import geobench` and the
CLI never load numba or compile anything. The kernel is compiled on first use and cached
on disk (numba keeps the cache beside this file, or in the user's cache directory when
the install is read-only; `NUMBA_CACHE_DIR` overrides both).

Each row of a block of float32 scores is read once: a branch-free count of the scores
clearly above the best positive's band (> hi), and one rarely taken branch for the few
scores that matter otherwise, those inside the band (lo <= s <= hi, listed for exact
re-scoring by the caller) and those above the row's running top-K threshold (appended to
the row's candidate buffer, which is cut back to its K best in place when it fills,
raising the threshold). The rare branch is well predicted, so the loop runs at about one
comparison's cost per score. Other positives of a row (all_positives) get their own
pass over the row while it is still in cache.
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


@_jit
def block_pass(s, c0, lo, hi, live, above, k, vals, idx, fill, thr):
    """One block of scores s (rows x width, C order); c0: reference number of column 0.

    lo, hi (rows x m, float32): band edges per positive slot; live: the slots to count;
    above (rows x m, int64): incremented in place. k > 0: the top-K buffers (vals, idx:
    rows x slots; fill, thr: per row) are updated in place. Returns the band members as
    arrays (row, column, slot), columns within the block."""
    n, w = s.shape
    cap = vals.shape[1]
    scratch = np.empty(cap, np.float32)
    size = 256
    band_r = np.empty(size, np.int64)
    band_c = np.empty(size, np.int64)
    band_j = np.empty(size, np.int64)
    nb = 0
    first = len(live) > 0 and live[0] == 0
    for r in range(n):
        row = s[r]
        lo0 = lo[r, 0] if first else np.float32(np.inf)
        hi0 = hi[r, 0] if first else np.float32(np.inf)
        t = thr[r] if k > 0 else np.float32(np.inf)
        f = fill[r] if k > 0 else 0
        cnt = 0
        for c in range(w):
            x = row[c]
            cnt += x > hi0
            if (x > t) | ((x >= lo0) & (x <= hi0)):
                if x >= lo0 and x <= hi0:
                    if nb == size:
                        band_r = _grow(band_r, nb)
                        band_c = _grow(band_c, nb)
                        band_j = _grow(band_j, nb)
                        size *= 2
                    band_r[nb] = r
                    band_c[nb] = c
                    band_j[nb] = 0
                    nb += 1
                if x > t:
                    if f == cap:
                        t = _prune_row(vals[r], idx[r], k, f, scratch)
                        thr[r] = t
                        f = k
                    if x > t:
                        vals[r, f] = x
                        idx[r, f] = c0 + c
                        f += 1
        if k > 0:
            fill[r] = f
        if first:
            above[r, 0] += cnt
        for jj in range(len(live)):
            j = live[jj]
            if j == 0:
                continue
            lj = lo[r, j]
            hj = hi[r, j]
            cnt = 0
            for c in range(w):
                x = row[c]
                cnt += x > hj
                if (x >= lj) & (x <= hj):
                    if nb == size:
                        band_r = _grow(band_r, nb)
                        band_c = _grow(band_c, nb)
                        band_j = _grow(band_j, nb)
                        size *= 2
                    band_r[nb] = r
                    band_c[nb] = c
                    band_j[nb] = j
                    nb += 1
            above[r, j] += cnt
    return band_r[:nb], band_c[:nb], band_j[:nb]
