"""Exact contracts of the retrieval helpers (search, block plan, tolerance, CSR) that the
broader search tests leave loose: pinned values, dtypes, messages and chunk boundaries.
Written to kill mutants that survived mutmut (issue 18)."""
from __future__ import annotations

import contextlib
import math
import re

import numpy as np
import pytest

from geobench.errors import DataError, UsageError
from geobench.eval import search as search_mod
from geobench.eval import threads
from geobench.eval.csr import CSR
from geobench.eval.plan import (
    SearchOptions,
    _max_norm,
    _resolve_backend,
    pair_scores,
    plan_blocks,
    take_rows,
    tolerance,
)
from geobench.eval.search import search

U = 2.0 ** -24


# ---------------------------------------------------------------- plan_blocks

def expected_plan(nq, nr, dim, memory_bytes, k=0, workers=1, bq=None, br=None):
    """The documented formula, written out with exact integer ceilings."""
    w = max(1, workers)
    memory = memory_bytes // w
    budget = max(1, memory - min(16 * 2 ** 20, memory // 4))
    per_row = 4 * dim + ((5 * max(2 * k, 1024) + 64 * k) if k else 0)
    if br is None:
        br = min(nr, max(2048, math.ceil(nr / 8) if nr < 2 ** 50 else -(-nr // 8)),
                 max(1, (budget // 6) // max(1, min(nq, 1024))))
    br = max(1, min(br, nr))
    if bq is None:
        rest = max(1, budget - br * 4 * dim)
        bq = min(rest // (6 * br + per_row), -(-nq // w))
    bq = max(1, min(bq, nq))
    return bq, br


PLAN_CASES = [
    # (nq, nr, dim, memory, k, workers)
    (10, 100_001, 16, 1 << 20, 0, 1),         # budget-bound reference blocks, bq floor 1
    (5000, 100_001, 8, 1 << 30, 0, 1),        # nr/8 (not exact) decides br
    (5000, 1000, 8, 1 << 30, 0, 1),           # all references in one block
    (5000, 30_000, 64, 3 << 26, 10, 1),       # top-K row bytes shrink bq
    (5000, 30_000, 64, 3 << 26, 300, 1),      # 2K > 1024
    (10, 30_000, 64, 3 << 26, 0, 3),          # query split: ceil(10 / 3) = 4
    (1000, 20_000, 32, 200 << 20, 5, 3),      # memory split among workers
    (3000, 500_000, 128, 1 << 24, 0, 1),      # small budget: quarter, not 16 MB
    (3000, 500_000, 128, 1 << 26, 1, 1),      # 16 MB reserve
    (700, 5000, 100, 10 << 20, 7, 1),         # elems // nq decides br (nq < 1024)
    (1, 1, 1, 1, 0, 1),                       # the smallest plan
    (3, 7, 2, 5, 0, 2),                       # 1-byte budgets
    (1, 10, 2, 10, 0, 1),                     # one score fits: blocks of one reference
    (1, 10_000_000, 16, 1 << 20, 0, 1),       # a single query gets the whole budget
    (5000, 30_000, 64, 3 << 26, 2000, 1),     # 2K > 1024 with a large K
    (506456970, 187808888838754402, 101, 298427, 0, 8),  # br = elems // nq, whole
]


@pytest.mark.parametrize("nq,nr,dim,mem,k,workers", PLAN_CASES)
def test_plan_blocks_follows_formula(nq, nr, dim, mem, k, workers):
    p = plan_blocks(nq, nr, dim, SearchOptions(memory_bytes=mem), "numpy", "cpu", 0.5, k,
                    workers=workers)
    assert (p.block_queries, p.block_references) == expected_plan(nq, nr, dim, mem, k, workers)
    assert type(p.block_queries) is int and type(p.block_references) is int
    assert (p.backend, p.device, p.tolerance) == ("numpy", "cpu", 0.5)


def test_plan_blocks_hand_computed():
    # 1 MiB: budget 786432 B, 131072 scores; br = min(100001, max(2048, 12501), 13107)
    p = plan_blocks(10, 100_001, 16, SearchOptions(memory_bytes=1 << 20), "numpy", "cpu", 0.0)
    assert (p.block_queries, p.block_references) == (1, 12501)
    # 1 GiB: budget 1 GiB - 16 MB; br = ceil(100001/8) = 12501; rest // (6*12501 + 32)
    p = plan_blocks(20_000, 100_001, 8, SearchOptions(memory_bytes=1 << 30), "numpy", "cpu",
                    0.0)
    budget = (1 << 30) - (16 << 20)
    assert p.block_references == 12501
    assert p.block_queries == (budget - 12501 * 32) // (6 * 12501 + 32)
    # defaults: k=0 and one worker
    p = plan_blocks(10, 30_000, 64, SearchOptions(memory_bytes=3 << 26), "numpy", "cpu", 0.0)
    assert p.block_queries == 10
    p = plan_blocks(10, 30_000, 64, SearchOptions(memory_bytes=3 << 26), "numpy", "cpu", 0.0,
                    workers=3)
    assert p.block_queries == 4  # ceil(10 / 3), not 10 / 3


def test_plan_blocks_default_k_and_workers_pinned():
    # memory-bound query blocks: a default k of 1 or 2 workers would shrink them
    opts = SearchOptions(memory_bytes=1 << 24)
    p = plan_blocks(100_000, 4096, 64, opts, "numpy", "cpu", 0.0)
    assert (p.block_queries, p.block_references) == expected_plan(100_000, 4096, 64, 1 << 24)


def test_plan_blocks_huge_budgets_stay_integral():
    # budgets beyond 2**53 bytes: float division would round the block sizes
    for mem, nq, nr, dim, k, w in [(2 ** 70 + 12345, 2 ** 60, 2 ** 40 + 3, 3, 0, 3),
                                   (2 ** 66 - 1, 2 ** 61 + 1, 2 ** 55 + 7, 1, 9, 1),
                                   (2 ** 64 + 5, 2 ** 62, 2 ** 12, 5, 0, 1),
                                   (3 ** 45, 2 ** 62 + 3, 3 ** 20, 7, 2, 5),
                                   # found by a random search against float-division variants
                                   (17826399406338761238192613, 34632361565913980744, 1072970,
                                    5, 1224, 5),
                                   (3305014198630732668413, 18628560295649895042518,
                                    172652558512900278827435, 23, 0, 7)]:
        p = plan_blocks(nq, nr, dim, SearchOptions(memory_bytes=mem), "numpy", "cpu", 0.0, k,
                        workers=w)
        assert (p.block_queries, p.block_references) == expected_plan(nq, nr, dim, mem, k, w)


def test_plan_blocks_explicit_sizes_respected_and_clamped():
    opts = SearchOptions(memory_bytes=1 << 20, block_queries=3, block_references=5)
    p = plan_blocks(10, 100, 16, opts, "torch", "cuda:1", 1.5)
    assert (p.block_queries, p.block_references, p.backend, p.device) == (3, 5, "torch",
                                                                          "cuda:1")
    opts = SearchOptions(memory_bytes=1 << 20, block_queries=50, block_references=500)
    p = plan_blocks(10, 100, 16, opts, "numpy", "cpu", 0.0)
    assert (p.block_queries, p.block_references) == (10, 100)
    # one query, one reference: blocks of exactly one
    p = plan_blocks(1, 1, 4, SearchOptions(memory_bytes=1 << 20), "numpy", "cpu", 0.0)
    assert (p.block_queries, p.block_references) == (1, 1)


@pytest.mark.parametrize("mem", [0, -5])
def test_plan_blocks_rejects_non_positive_memory(mem):
    msg = f"memory budget must be positive, got {mem} bytes"
    with pytest.raises(UsageError, match=re.escape(msg)):
        plan_blocks(4, 4, 4, SearchOptions(memory_bytes=mem), "numpy", "cpu", 0.0)


def test_plan_blocks_quarter_reserve_is_whole_bytes():
    # 45 bytes: reserve 45 // 4 = 11, budget 34; one-reference blocks cost 6 + 4 bytes
    # per query after the 4-byte reference block: (34 - 4) // 10 = 3
    opts = SearchOptions(memory_bytes=45, block_references=1)
    p = plan_blocks(10, 5, 1, opts, "numpy", "cpu", 0.0)
    assert (p.block_queries, p.block_references) == (3, 1)


def test_plan_blocks_one_byte_budget_is_valid():
    p = plan_blocks(4, 4, 4, SearchOptions(memory_bytes=1), "numpy", "cpu", 0.0)
    assert (p.block_queries, p.block_references) == (1, 1)


# ------------------------------------------------------- tolerance, _max_norm

def rows_with_norms(n, d, norms, dtype=np.float32):
    x = np.zeros((n, d), dtype=dtype)
    for i, v in norms.items():
        x[i, i % d] = v
    return x


@pytest.mark.parametrize("d,factor", [(16, 64.0), (10_000, 800.0)])
def test_tolerance_exact_value(d, factor):
    q = rows_with_norms(3, d, {0: 2.0})
    r = rows_with_norms(4, d, {3: -3.0})
    qn, rn = 2.0 * (1 + 1e-6), 3.0 * (1 + 1e-6)
    assert tolerance(q, r) == factor * U * qn * rn
    assert tolerance(q, r) == max(8.0 * math.sqrt(d), 64.0) * 2.0 ** -24 * qn * rn


def test_tolerance_names_the_query_side():
    q = rows_with_norms(3, 4, {0: 1.0})
    q[2, 1] = np.nan
    msg = "query descriptor 2 contains NaN or Inf (or overflows float32); check the model output"
    with pytest.raises(DataError, match=re.escape(msg)):
        tolerance(q, q.copy())


def test_max_norm_exact_and_small_norms():
    assert _max_norm(rows_with_norms(5, 3, {0: 0.5, 3: -0.25}), "q") == 0.5 * (1 + 1e-6)
    assert _max_norm(rows_with_norms(5, 3, {}), "q") == 0.0
    assert _max_norm(np.zeros((0, 3), np.float32), "q") == 0.0
    assert _max_norm(rows_with_norms(5, 3, {0: 3.0}, np.float16), "q") == 3.0 * (1 + 1e-6)


def test_max_norm_every_chunk_and_first_row():
    # small explicit steps: the largest norm first, in the last chunk, past shape[1]
    x = rows_with_norms(10, 2, {0: 2.0, 9: 1.0})
    assert _max_norm(x, "q", step=3) == 2.0 * (1 + 1e-6)
    x = rows_with_norms(10, 2, {9: 2.0, 0: 1.0})
    assert _max_norm(x, "q", step=3) == 2.0 * (1 + 1e-6)
    # the default step (8192): largest norm in the last chunk, and in the first row
    x = rows_with_norms(16_400, 2, {16_399: 3.0, 5: 2.0})
    assert _max_norm(x, "r") == 3.0 * (1 + 1e-6)
    x = rows_with_norms(8200, 2, {0: 3.0, 8199: 2.0})
    assert _max_norm(x, "r") == 3.0 * (1 + 1e-6)


def test_max_norm_reports_bad_rows_across_chunks():
    x = rows_with_norms(10, 2, {0: 1.0})
    x[0, 1] = np.inf
    msg = "ref descriptor 0 contains NaN or Inf (or overflows float32); check the model output"
    with pytest.raises(DataError, match=re.escape(msg)):
        _max_norm(x, "ref", step=3)
    x = rows_with_norms(10, 2, {0: 1.0})
    x[7, 0] = np.nan
    with pytest.raises(DataError, match="ref descriptor 7 contains"):
        _max_norm(x, "ref", step=3)


def test_max_norm_float64_overflowing_float32_is_rejected():
    x = np.zeros((2, 3), np.float64)
    x[1, 2] = 1e30  # finite in float64, its square is not in float32
    msg = "q descriptor 1 contains NaN or Inf (or overflows float32); check the model output"
    with pytest.raises(DataError, match=re.escape(msg)):
        _max_norm(x, "q")


# ---------------------------------------------------------- _resolve_backend

@pytest.fixture
def cuda(monkeypatch):
    """Pretend CUDA is present or absent; nothing here touches a device."""
    torch = pytest.importorskip("torch")

    def set_(flag: bool):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: flag)
    return set_


@pytest.mark.parametrize("flag", [False, True])
def test_resolve_backend_table(cuda, flag):
    cuda(flag)
    dev = "cuda" if flag else "cpu"
    assert _resolve_backend(SearchOptions(backend="numpy")) == ("numpy", "cpu")
    assert _resolve_backend(SearchOptions(backend="numpy", device="cuda:1")) == ("numpy", "cpu")
    assert _resolve_backend(SearchOptions(backend="torch")) == ("torch", dev)
    assert _resolve_backend(SearchOptions(backend="torch", device="cuda:3")) == ("torch",
                                                                                 "cuda:3")
    assert _resolve_backend(SearchOptions(backend="torch", device="cpu")) == ("torch", "cpu")
    assert _resolve_backend(SearchOptions()) == (("torch", "cuda") if flag else ("numpy", "cpu"))
    assert _resolve_backend(SearchOptions(device="cuda:2")) == ("torch", "cuda:2")
    assert _resolve_backend(SearchOptions(device="cpu")) == (("torch", "cuda") if flag
                                                             else ("numpy", "cpu"))


@pytest.mark.parametrize("name", ["NUMPY", "faiss", ""])
def test_resolve_backend_unknown(name):
    msg = f"unknown search backend {name!r}; use auto, numpy or torch"
    with pytest.raises(UsageError, match=re.escape(msg)):
        _resolve_backend(SearchOptions(backend=name))


# ----------------------------------------------------------- take_rows, pair_scores

@pytest.fixture
def h5(tmp_path):
    h5py = pytest.importorskip("h5py")
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    f = h5py.File(tmp_path / "d.h5", "w")
    f["x"] = x
    yield x, f["x"]
    f.close()


def test_take_rows_on_disk(h5):
    x, ds = h5
    idx = np.array([4, 1, 4, 0])
    np.testing.assert_array_equal(take_rows(ds, idx), x[idx])
    np.testing.assert_array_equal(take_rows(ds, np.array([3])), x[[3]])
    empty = take_rows(ds, np.zeros(0, np.int64))
    assert empty.shape == (0, 4) and empty.dtype == np.float32


def test_pair_scores_accepts_integral_float_indices():
    q = np.array([[1, 2], [3, 4]], np.float32)
    r = np.array([[1, 0], [0, 1], [2, 2]], np.float32)
    out = pair_scores(q, r, np.array([1.0, 0.0]), np.array([2.0, 1.0]))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [14.0, 2.0])


# ---------------------------------------------------------------------- CSR

def test_csr_from_lists_exact():
    c = CSR.from_lists([])
    assert c.indices.shape == (0,) and c.indices.dtype == np.int64
    np.testing.assert_array_equal(c.indptr, [0])
    big = 2 ** 62 + 1  # not representable in float64
    c = CSR.from_lists([[], [big]])
    assert int(c.indices[0]) == big


def test_csr_from_pairs_casts_to_int64():
    c = CSR.from_pairs(np.array([1.0, 0.0, 1.0]), np.array([3.0, 2.0, 1.0]), 3)
    assert c.indices.dtype == np.int64
    np.testing.assert_array_equal(c.indptr, [0, 1, 3, 3])
    np.testing.assert_array_equal(c.indices, [2, 1, 3])


def test_csr_unique_exact():
    e = CSR.from_lists([[], []]).unique()
    np.testing.assert_array_equal(e.indptr, [0, 0, 0])
    assert e.indptr.dtype == np.int64 and e.indices.dtype == np.int64
    assert e.indices.shape == (0,)
    big = 2 ** 62 + 1
    u = CSR(np.array([0, 2]), np.array([big, big])).unique()
    assert u.indices.tolist() == [big]


# -------------------------------------------------------------------- search

def small_world():
    q = np.array([[1, 0], [0, 1], [1, 1], [2, -1], [-1, 0]], np.float32)
    r = np.array([[1, 0], [0, 1], [1, 1], [3, 1], [-1, 2], [0, -1], [2, 0]], np.float32)
    pos = CSR.from_lists([[0, 6, 3], [], [2], [5, 0], [1]])
    return q, r, pos


def test_search_defaults_and_dtypes(monkeypatch):
    calls = []

    @contextlib.contextmanager
    def fake_bar(description, total=None):
        calls.append((description, total))
        yield type("H", (), {"advance": lambda self, n=1: None,
                             "update": lambda self, *a, **k: None})()

    monkeypatch.setattr(search_mod, "bar", fake_bar)
    q, r, pos = small_world()
    opts = SearchOptions(backend="numpy", block_queries=2, block_references=3)
    res = search(q, r, pos, options=opts)
    assert calls == [("searching", 3 * 3)]
    assert res.topk_indices.shape == (5, 0) and res.topk_scores.shape == (5, 0)
    assert res.n_reference == 7
    assert (res.plan.backend, res.plan.device) == ("numpy", "cpu")
    for a in (res.ranks, res.above, res.tied, res.tied_positives, res.tied_nonpositives,
              res.topk_indices):
        assert a.dtype == np.int64
    # only the best positive of each query is counted without all_positives
    # q0=(1,0): refs 0,6,3 score 1,2,3 -> sorted 3,6,0; best 3 (score 3), nothing above
    np.testing.assert_array_equal(res.positives.indices, [3, 6, 0, 2, 0, 5, 1])
    np.testing.assert_array_equal(res.above, [0, -1, -1, 1, 2, -1, 1])
    np.testing.assert_array_equal(res.tied, [1, -1, -1, 2, 1, -1, 2])
    np.testing.assert_array_equal(res.ranks, [0, 7, 1, 2, 1])
    np.testing.assert_array_equal(res.tied_positives, [1, 0, 1, 1, 1])
    np.testing.assert_array_equal(res.tied_nonpositives, [0, 0, 1, 0, 1])
    assert set(res.phases) >= {"products", "passes", "rescoring"}
    calls.clear()
    search(q, r, pos, options=opts, progress="matching")
    assert calls == [("matching", 9)]


def test_search_single_reference_and_topk():
    q = np.array([[1, 0], [0, 1]], np.float32)
    r = np.array([[1, 1]], np.float32)
    res = search(q, r, CSR.from_lists([[0], []]), k=3, options=SearchOptions(backend="numpy"))
    np.testing.assert_array_equal(res.ranks, [0, 1])
    assert res.topk_indices.tolist() == [[0], [0]]
    assert res.topk_indices.dtype == np.int64


def test_search_workers_split_queries(monkeypatch):
    monkeypatch.setattr(threads, "cpu_threads", lambda: 2)
    rng = np.random.default_rng(3)
    q = rng.standard_normal((600, 4)).astype(np.float32)
    r = rng.standard_normal((50, 4)).astype(np.float32)
    pos = CSR.from_lists([[i % 50] for i in range(600)])
    res = search(q, r, pos, k=40, options=SearchOptions(backend="numpy", memory_bytes=1 << 21))
    assert res.plan == plan_blocks(600, 50, 4, SearchOptions(memory_bytes=1 << 21), "numpy",
                                   "cpu", res.plan.tolerance, 40, workers=2, passes="numba")
    assert res.plan.block_queries == expected_plan(600, 50, 4, 1 << 21, 40, 2)[0]
    s = q.astype(np.float64) @ r.astype(np.float64).T
    np.testing.assert_array_equal(res.ranks, (s > s[np.arange(600), np.arange(600) % 50,
                                                    None]).sum(1))


# ---------------------------------------------------------------- _sort_topk

def test_sort_topk_ties_by_reference_number():
    idx = np.array([[5, 2, 9, 1], [3, 4, 0, 8]], np.int64)
    sc = np.array([[0.5, 0.75, 0.5, 0.75], [1.0, -1.0, 1.0, 2.0]], np.float32)
    i, s = search_mod._sort_topk(idx, sc)
    assert i.tolist() == [[1, 2, 5, 9], [8, 0, 3, 4]]
    np.testing.assert_array_equal(s, [[0.75, 0.75, 0.5, 0.5], [2.0, 1.0, 1.0, -1.0]])
    i, s = search_mod._sort_topk(idx[:, :1], sc[:, :1])
    assert i.tolist() == [[5], [3]]
