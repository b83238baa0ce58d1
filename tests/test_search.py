"""Chunked exact search against a brute-force reference, ties and chunk sizes included."""
from __future__ import annotations

import numpy as np
import pytest

from geobench.errors import DataError, UsageError
from geobench.eval.search import CSR, SearchOptions, plan_blocks, search

pytestmark = pytest.mark.usefixtures("both_passes")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute(q: np.ndarray, r: np.ndarray, pos: CSR):
    """Full score matrix (float64 sums of exact products) and per-positive counts."""
    s = (q.astype(np.float64)[:, None, :] * r.astype(np.float64)[None, :, :]).sum(-1)
    ranks = np.full(len(q), len(r), dtype=np.int64)
    for i in range(len(q)):
        p = pos.row(i)
        if len(p):
            ranks[i] = int((s[i] > s[i, p].max()).sum())
    return s, ranks


@pytest.fixture(scope="module")
def world():
    """Random descriptors with exact ties: duplicated references, queries equal to a
    reference, multiple positives (some tied) and queries without positives."""
    rng = np.random.default_rng(7)
    nq, nr, d = 90, 260, 24
    r = unit(rng.standard_normal((nr, d)))
    r[200:240] = r[0:40]  # duplicates
    q = unit(r[:nq] + 0.35 * rng.standard_normal((nq, d)).astype(np.float32))
    q[10:20] = r[5]  # queries identical to a reference: ties with its duplicates too
    rows = [list(rng.choice(nr, size=int(rng.integers(0, 4)), replace=False)) for _ in range(nq)]
    for i in range(nq):
        if i % 9 == 0:
            rows[i] = []  # no positive
        elif i % 5 == 0:
            rows[i] = [i, i + 200] if i < 40 else [i]  # tied positives (duplicates)
    rows[12] = [205]  # the duplicate of r[5] is the positive: r[5] ties, not above
    return q, r, CSR.from_lists(rows)


OPTIONS = [
    SearchOptions(),
    SearchOptions(block_queries=7, block_references=13),
    SearchOptions(block_queries=4, block_references=3),
    SearchOptions(block_queries=90, block_references=33),
    SearchOptions(memory_bytes=4096),
    SearchOptions(backend="torch", device="cpu", block_queries=11, block_references=50),
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: f"{o.backend}-{o.block_queries}x"
                         f"{o.block_references}-{o.memory_bytes}")
def test_ranks_match_brute_force_at_any_block_size(world, options):
    q, r, pos = world
    s, want = brute(q, r, pos)
    res = search(q, r, pos, k=10, all_positives=True, options=options)
    np.testing.assert_array_equal(res.ranks, want)
    assert res.ranks[0] == len(r)  # no positive: rank = n_reference (a miss)
    assert res.ranks[12] == 0  # tied with r[5] (and 12's own copy): ties favour the query
    # every positive's count of strictly better references
    for i in range(len(q)):
        lo, hi = res.positives.indptr[i], res.positives.indptr[i + 1]
        for j in range(lo, hi):
            p = res.positives.indices[j]
            assert res.above[j] == int((s[i] > s[i, p]).sum())
    # top-K holds the K best scores, sorted
    best = -np.sort(-s, axis=1)[:, :10]
    got = np.take_along_axis(s, res.topk_indices, 1)
    np.testing.assert_allclose(got, best, atol=1e-6)
    assert (np.diff(res.topk_scores, axis=1) <= 0).all()


def test_float16_descriptors_are_searched_in_float32(world):
    q, r, pos = world
    q16, r16 = q.astype(np.float16), r.astype(np.float16)
    _, want = brute(q16, r16, pos)
    for options in OPTIONS[:3]:
        res = search(q16, r16, pos, k=5, options=options)
        np.testing.assert_array_equal(res.ranks, want)
        assert res.topk_scores.dtype == np.float32


def test_collapsed_model_ties_everything_in_the_query_favour():
    q = unit(np.ones((5, 8)))
    r = unit(np.ones((40, 8)))
    pos = CSR.from_lists([[i] for i in range(5)])
    for options in OPTIONS[:3]:
        assert search(q, r, pos, options=options).ranks.tolist() == [0] * 5


def test_rank_counts_only_strictly_better_references():
    q = np.array([[1.0, 0.0]], np.float32)
    r = np.array([[0.6, 0.8], [1.0, 0.0], [0.8, 0.6], [0.8, 0.6], [0.0, 1.0]], np.float32)
    assert search(q, r, CSR.from_lists([[2]])).ranks.tolist() == [1]  # tie with 3 ignored
    assert search(q, r, CSR.from_lists([[3, 0]])).ranks.tolist() == [1]  # best positive is 3
    assert search(q, r, CSR.from_lists([[4]])).ranks.tolist() == [4]
    res = search(q, r, CSR.from_lists([[4]]), k=3)
    assert res.topk_indices[0].tolist() == [1, 2, 3]  # ties by reference number


def test_csr_helpers():
    c = CSR.from_pairs(np.array([2, 0, 2, 2]), np.array([5, 1, 3, 5]), 4)
    assert c.indptr.tolist() == [0, 1, 1, 4, 4]
    assert c.row(2).tolist() == [3, 5, 5]
    u = c.unique()
    assert u.row(2).tolist() == [3, 5] and u.lengths.tolist() == [1, 0, 2, 0]
    assert CSR.from_lists([[], [4, 1]]).row(1).tolist() == [4, 1]


def test_plan_stays_within_the_budget():
    for memory in (1 << 20, 64 << 20, 2 << 30):
        plan = plan_blocks(52605, 90618, 1024, SearchOptions(memory_bytes=memory), "numpy",
                           "cpu", 1e-5, k=100)
        bq, br = plan.block_queries, plan.block_references
        work = bq * br * 6 + (bq + br) * 1024 * 4 + bq * (5 * 1024 + 64 * 100)
        assert work <= memory or bq == 1
        assert br <= 90618 and bq <= 52605
    big = plan_blocks(52605, 90618, 1024, SearchOptions(memory_bytes=2 << 30), "numpy", "cpu", 0)
    assert big.block_queries > 1000 and big.block_references >= 90618 // 8


def test_bad_arguments_raise_usage_errors():
    q = unit(np.ones((2, 4)))
    with pytest.raises(UsageError, match="descriptor sizes differ"):
        search(q, unit(np.ones((3, 5))), CSR.from_lists([[0], [1]]))
    with pytest.raises(UsageError, match=r"\[0, 3\)"):
        search(q, unit(np.ones((3, 4))), CSR.from_lists([[0], [3]]))
    with pytest.raises(UsageError, match="2 queries"):
        search(q, unit(np.ones((3, 4))), CSR.from_lists([[0]]))
    with pytest.raises(UsageError, match="nothing to search"):
        search(q[:0], unit(np.ones((3, 4))), CSR.from_lists([]))
    bad = unit(np.ones((3, 4)))
    bad[1, 2] = np.nan
    with pytest.raises(DataError, match="reference descriptor 1 contains NaN"):
        search(q, bad, CSR.from_lists([[0], [1]]))
    with pytest.raises(UsageError, match="backend"):
        search(q, unit(np.ones((3, 4))), CSR.from_lists([[0], [1]]),
               options=SearchOptions(backend="faiss"))


@pytest.mark.parametrize("dim", [13, 37, 64, 255])
def test_canonical_pair_scores_do_not_depend_on_position(dim):
    from geobench.eval.search import pair_scores

    rng = np.random.default_rng(dim)
    q = rng.standard_normal((3, dim)).astype(np.float32)
    r = rng.standard_normal((5, dim)).astype(np.float32)
    rows = np.tile(np.arange(3), 700)
    cols = np.tile(np.arange(5), 420)
    got = pair_scores(q, r, rows, cols)
    first = {}
    for a, b, v in zip(rows, cols, got, strict=True):
        assert first.setdefault((a, b), v) == v  # bitwise identical wherever it sits
