"""The compiled pass (numba) of the CPU search against brute force, and the choice between
it and numpy's passes. The search-level tests (test_search*, test_eval_edges, test_ties)
run both engines through the `both_passes` fixture; these pin the kernel's own edges:
ties at the K-th score, band lists that
outgrow their first allocation, several positives per row, the cut-back's tie order."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from geobench.errors import UsageError
from geobench.eval.blocks import TopK
from geobench.eval.compiled import resolve_passes
from geobench.eval.csr import CSR
from geobench.eval.search import SearchOptions, search

kernel = pytest.importorskip("geobench.eval.kernel")


def run_blocks(s: np.ndarray, lo, hi, k: int, width: int):
    """The kernel over s cut into reference blocks of `width` columns."""
    n, m = lo.shape
    above = np.zeros((n, m), np.int64)
    top = TopK(n, k)
    band = []
    for c0 in range(0, s.shape[1], width):
        block = np.ascontiguousarray(s[:, c0:c0 + width])
        r, c, j = kernel.block_pass(block, c0, lo, hi, np.arange(m), above, k, top.vals,
                                    top.idx, top.fill, top.thr)
        band += list(zip(r.tolist(), (c + c0).tolist(), j.tolist()))
    top_i = np.empty((n, k), np.int64)
    top_s = np.empty((n, k), np.float32)
    top.result(top_i, top_s)
    return above, sorted(band), top_i, top_s


def brute_topk(s: np.ndarray, k: int) -> list[list[int]]:
    """K best per row; equal scores: the smaller reference number first."""
    return [sorted(np.argsort(-row, kind="stable")[:k].tolist()) for row in s]


@pytest.mark.parametrize("k,width", [(1, 1000), (7, 1000), (7, 13), (30, 64), (5, 3),
                                     (3, 2600)])
def test_counts_band_and_topk_equal_brute_force_with_ties(k, width):
    """(3, 2600): rows wider than one scan segment, cut back many times within it."""
    rng = np.random.default_rng(k + width)
    n, w = 9, max(1000, width)
    # scores on a coarse grid: hundreds of exact ties, at the K-th score too
    s = (rng.integers(-40, 40, (n, w)) / 8).astype(np.float32)
    s[3] = 1.0  # a row where every score ties
    pos = rng.integers(0, w, (n, 2))
    thr = s[np.arange(n)[:, None], pos]
    lo, hi = (thr - 0.2).astype(np.float32), (thr + 0.2).astype(np.float32)
    above, band, top_i, top_s = run_blocks(s, lo, hi, k, width)
    want_band = sorted((i, c, j) for i in range(n) for j in range(2) for c in range(w)
                       if lo[i, j] <= s[i, c] <= hi[i, j])
    assert len(want_band) > 256  # the band list outgrows its first allocation
    assert band == want_band
    assert above.tolist() == [[int((s[i] > hi[i, j]).sum()) for j in range(2)]
                              for i in range(n)]
    assert [sorted(row) for row in top_i.tolist()] == brute_topk(s, k)
    assert top_i[3].tolist() == list(range(k))
    np.testing.assert_array_equal(np.sort(top_s, axis=1),
                                  np.sort(np.take_along_axis(s, top_i, 1), axis=1))


def test_rising_scores_cut_the_buffer_back_many_times_per_row():
    """Each score beats every earlier one: every column is a candidate, and the 4·K-slot
    buffer is cut back to K over and over within one block (each time the rest of the
    row is scanned again); falling scores leave the first K."""
    n, w, k = 4, 3000, 10
    s = np.tile(np.linspace(-1, 1, w, dtype=np.float32), (n, 1))
    s[1] = s[1, ::-1]  # falling: only the first K survive
    inf = np.full((n, 1), np.inf, np.float32)
    above, band, top_i, _ = run_blocks(s, inf, inf, k, w)
    assert band == [] and above.sum() == 0
    assert sorted(top_i[0].tolist()) == list(range(w - k, w))
    assert sorted(top_i[1].tolist()) == list(range(k))


def test_cut_back_keeps_the_k_best_in_reference_order_ties_leftmost():
    rng = np.random.default_rng(0)
    for n, k in ((1, 1), (5, 2), (64, 7), (401, 100)):
        for x in (rng.standard_normal(n), rng.integers(0, 3, n)):
            vals = x.astype(np.float32)
            idx = np.arange(n, dtype=np.int64) * 10
            want = sorted(np.argsort(-vals, kind="stable")[:k].tolist())
            t = kernel._prune_row(vals, idx, k, n, np.empty(n, np.float32))
            assert idx[:k].tolist() == [10 * i for i in want]  # slot order kept
            assert t == np.sort(x.astype(np.float32))[::-1][k - 1]
            assert (vals[k:] == -np.inf).all() and (idx[k:] == -1).all()


def test_both_engines_give_identical_results_with_several_positives():
    rng = np.random.default_rng(5)
    r = (rng.integers(-3, 4, (900, 8)) / 3).astype(np.float32)  # many duplicates
    q = r[rng.integers(0, 900, 40)] + (rng.random((40, 1)) < 0.5).astype(np.float32) / 7
    pos = CSR.from_lists([rng.choice(900, 3, replace=False) for _ in range(40)])
    runs = [search(q, r, pos, k=12, all_positives=True,
                   options=SearchOptions(passes=p, block_queries=16, block_references=200))
            for p in ("numba", "numpy")]
    assert [x.plan.passes for x in runs] == ["numba", "numpy"]
    for name in ("ranks", "above", "tied", "tied_positives", "tied_nonpositives",
                 "topk_indices", "topk_scores"):
        np.testing.assert_array_equal(getattr(runs[0], name), getattr(runs[1], name))
    s = q.astype(np.float64) @ r.astype(np.float64).T
    want = [int((s[i] > s[i, p]).sum()) for i in range(40) for p in runs[0].positives.row(i)]
    assert runs[0].above.tolist() == want


def test_passes_choice(monkeypatch):
    monkeypatch.delenv("GEOBENCH_SEARCH_PASSES", raising=False)
    assert resolve_passes("numpy", "auto") == "numba"
    assert resolve_passes("numpy", "numpy") == "numpy"
    assert resolve_passes("torch", "numba") == "torch"
    monkeypatch.setenv("GEOBENCH_SEARCH_PASSES", "numpy")
    assert resolve_passes("numpy", "auto") == "numpy"
    assert resolve_passes("numpy", "numba") == "numba"  # an explicit choice wins
    monkeypatch.setenv("GEOBENCH_SEARCH_PASSES", "fast")
    with pytest.raises(UsageError, match="GEOBENCH_SEARCH_PASSES='fast'"):
        resolve_passes("numpy", "auto")
    with pytest.raises(UsageError, match="unknown search passes 'fast'"):
        resolve_passes("numpy", "fast")


def test_without_numba_auto_falls_back_and_numba_names_the_fix(monkeypatch):
    monkeypatch.delenv("GEOBENCH_SEARCH_PASSES", raising=False)
    monkeypatch.setitem(sys.modules, "geobench.eval.kernel", None)  # import fails
    assert resolve_passes("numpy", "auto") == "numpy"
    with pytest.raises(UsageError, match="pip install numba"):
        resolve_passes("numpy", "numba")
    q = np.eye(3, dtype=np.float32)
    assert search(q, q, CSR.from_lists([[0]] * 3)).plan.passes == "numpy"


def test_no_writable_cache_compiles_per_process(monkeypatch):
    """A read-only install whose user cache is not writable either: numba finds no cache
    location and refuses cache=True; the kernel then compiles on first use instead."""
    from numba.core import caching

    def twice(x):
        return 2 * x

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
    jitted = kernel._jit(twice)
    assert jitted._cache.__class__.__name__ == "NullCache"
    assert jitted(4) == 8
