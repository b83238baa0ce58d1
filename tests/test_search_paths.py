"""Every path of the CPU search engine against a float64 brute force: the fused sparse pass
over many row tiles, the first block's second segment, blocks narrower than K, one
reference per block, no positives at all, and rows wider than the packed counter handles.
(Mutation testing found each of these unexercised: issue 18.)"""
from __future__ import annotations

import numpy as np
import pytest

from geobench.eval.csr import CSR
from geobench.eval.search import SearchOptions, search

pytestmark = pytest.mark.usefixtures("both_passes")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def small_tiles(monkeypatch):
    """Row tiles of 8 rows and three search workers."""
    from geobench.eval import blocks, threads

    monkeypatch.setattr(blocks.NumpyEngine, "tile_bytes", 4096)
    monkeypatch.setattr(threads, "MIN_ROWS", 4)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")


@pytest.fixture(scope="module")
def near():
    """Queries close to their positive (ranks near the top, so the fused sparse pass
    runs), duplicated references (exact ties) spread beyond column 1,024, two positives
    for some queries."""
    rng = np.random.default_rng(21)
    nq, nr, d = 60, 1400, 12
    r = unit(rng.standard_normal((nr, d)))
    src = rng.choice(1000, nq, replace=False)
    r[1000 + np.arange(nq)] = r[src]                 # a duplicate of every positive, late
    q = unit(r[src] + 0.08 * rng.standard_normal((nq, d)))
    rows = [[int(s)] if i % 3 else [int(s), int(rng.integers(nr))] for i, s in enumerate(src)]
    return q, r, rows


def same_topk(got: np.ndarray, q, r, k: int) -> bool:
    """The K best references of every row, in order of score. Exact duplicates may come in
    either order (their float32 block scores can differ by one rounding), and a row whose
    K-th and K+1-th scores nearly tie may hold either."""
    s = q.astype(np.float64) @ r.astype(np.float64).T
    order = np.argsort(-s, axis=1, kind="stable")
    for i in range(len(q)):
        kth = s[i, order[i, k - 1]]
        sure = set(order[i, :k][s[i, order[i, :k]] > kth + 1e-6].tolist())
        if not sure <= set(got[i].tolist()) or (s[i, got[i]] < kth - 1e-6).any():
            return False
        if (np.diff(s[i, got[i]]) > 1e-6).any():
            return False
    return True


def expected(q, r, rows, k):
    s = q.astype(np.float64) @ r.astype(np.float64).T
    above, tied = [], []
    for i, pos in enumerate(rows):
        for p in sorted(pos, key=lambda p: (-s[i, p], p)):
            above.append(int((s[i] > s[i, p]).sum()))
            tied.append(int((s[i] == s[i, p]).sum()))
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return above, tied, top


@pytest.mark.parametrize("options", [
    SearchOptions(block_queries=20, block_references=1400),   # first block: two segments
    SearchOptions(block_queries=13, block_references=97),     # many blocks
    SearchOptions(block_queries=60, block_references=1100),
], ids=["one-block", "97-wide", "1100-wide"])
@pytest.mark.parametrize("k", [0, 5])
def test_counts_ties_and_topk_over_many_tiles(near, small_tiles, options, k):
    q, r, rows = near
    above, tied, top = expected(q, r, rows, k)
    res = search(q, r, CSR.from_lists(rows), k=k, all_positives=True, options=options)
    assert res.above.tolist() == above
    assert res.tied.tolist() == tied
    assert tied.count(2) >= len(q)  # each source positive ties with its duplicate
    assert res.topk_indices.shape == top.shape
    assert k == 0 or same_topk(res.topk_indices, q, r, k)


def test_topk_of_queries_without_positives_over_many_tiles(near, small_tiles):
    q, r, _ = near
    _, _, top = expected(q, r, [[]] * len(q), 4)
    res = search(q, r, CSR.from_lists([[]] * len(q)), k=4,
                 options=SearchOptions(block_queries=30, block_references=300))
    assert res.ranks.tolist() == [len(r)] * len(q)
    assert res.topk_indices.tolist() == top.tolist()


@pytest.mark.parametrize("block_references", [1, 3])
def test_topk_with_blocks_narrower_than_k(near, block_references):
    """References from best to worst for query 0: the first block's few must not set
    the filter threshold before K have been seen."""
    q, r, _ = near
    q = q[:6]
    r = r[np.argsort(-(r @ q[0]))][:40]
    res = search(q, r, CSR.from_lists([[i] for i in range(6)]), k=5,
                 options=SearchOptions(block_queries=6, block_references=block_references))
    assert res.topk_indices[0].tolist() == [0, 1, 2, 3, 4]
    assert same_topk(res.topk_indices, q, r, 5)


def test_rank_counts_over_a_row_of_half_a_million_references():
    """524,288 references in one block: the mask row is 65,536 words, where the packed
    per-row counter hands over to numpy's (its 16-bit lanes would overflow)."""
    n = 1 << 19
    r = np.linspace(0.5, 1.0, n, dtype=np.float32)[:, None]
    r[7] = 0.25        # query 0's positive: every other reference beats it
    q = np.array([[1.0], [-1.0]], np.float32)  # query 1: its positive (the same) is the best
    res = search(q, r, CSR.from_lists([[7], [7]]), options=SearchOptions(block_references=n))
    assert res.ranks.tolist() == [n - 1, 0]


def test_phase_clock_splits_products_passes_and_rescoring(near, monkeypatch):
    """With a clock that ticks once per reading, each phase's total is a count: one tick
    per block product, one per block's passes plus one per query block's top-K, and one
    per re-scoring call (moved from passes to rescoring)."""
    import types

    from geobench.eval import blocks

    ticks = iter(range(10**6))
    monkeypatch.setattr(blocks, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    q, r, rows = near
    res = search(q, r, CSR.from_lists(rows), k=3,
                 options=SearchOptions(block_queries=20, block_references=500))
    n_query_blocks, n_blocks = 3, 3 * 3
    assert set(res.phases) == {"products", "passes", "rescoring"}
    assert res.phases["products"] == n_blocks
    assert res.phases["rescoring"] >= n_query_blocks  # every query block re-scores its ties
    assert res.phases["passes"] == n_blocks + n_query_blocks + res.phases["rescoring"]


def test_torch_backend_runs_the_torch_engine(near, monkeypatch):
    from geobench.eval import blocks

    calls = []
    scores = blocks.TorchEngine.scores
    monkeypatch.setattr(blocks.TorchEngine, "scores",
                        lambda self, *a: calls.append(1) or scores(self, *a))
    q, r, rows = near
    res = search(q[:8], r[:300], CSR.from_lists([[0]] * 8), k=2,
                 options=SearchOptions(backend="torch", device="cpu", block_references=100))
    assert len(calls) == 3 and res.plan.backend == "torch"
