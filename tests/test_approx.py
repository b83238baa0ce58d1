"""eval --search faiss:FACTORY: approximate search, marked, measured against exact."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from geobench.eval.csr import CSR
from geobench.eval.evaluate import EvalOptions, evaluate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _clustered(nq: int, nr: int, dim: int, seed: int = 0):
    """References around 40 centres; each query is a noisy copy of one reference."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    ref = centres[rng.integers(0, 40, nr)] + 0.6 * rng.normal(size=(nr, dim))
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    target = rng.choice(nr, nq, replace=False)
    qry = ref[target] + 0.25 * rng.normal(size=(nq, dim)) / np.sqrt(dim)
    qry /= np.linalg.norm(qry, axis=1, keepdims=True)
    return qry.astype(np.float32), ref.astype(np.float32), CSR.from_lists([[t] for t in target])


def test_flat_index_equals_exact_search():
    q, r, pos = _clustered(300, 3000, 32)
    exact = evaluate(q, r, pos, "pairs", EvalOptions(save_topk=10))
    flat = evaluate(q, r, pos, "pairs", EvalOptions(save_topk=10, search="faiss:Flat",
                                                    exact_sample=100))
    assert np.array_equal(exact.ranks, flat.ranks)  # no exact ties in continuous data
    assert np.array_equal(exact.topk_indices, flat.topk_indices)
    assert flat.metrics["search"] == "faiss:Flat"
    assert flat.metrics["r@1_lost"] == 0.0 and flat.metrics["exact_sample"] == 100
    assert "search" not in exact.metrics


def test_ivf_is_marked_and_its_loss_measured():
    q, r, pos = _clustered(400, 4000, 32, seed=1)
    exact = evaluate(q, r, pos, "pairs", EvalOptions())
    few = evaluate(q, r, pos, "pairs", EvalOptions(search="faiss:IVF64,Flat", nprobe=1,
                                                   exact_sample=400))
    many = evaluate(q, r, pos, "pairs", EvalOptions(search="faiss:IVF64,Flat", nprobe=64,
                                                    exact_sample=400))
    assert few.metrics["search"] == "faiss:IVF64,Flat (nprobe=1)"
    # Visiting every list is exact search again; one list loses some queries.
    assert many.metrics["r@1"] == pytest.approx(exact.metrics["r@1"])
    assert few.metrics["r@1"] <= exact.metrics["r@1"]
    lost = few.metrics["r@1_exact_sample"] - few.metrics["r@1_approx_sample"]
    assert few.metrics["r@1_lost"] == pytest.approx(lost)
    assert few.metrics["r@1_exact_sample"] == pytest.approx(exact.metrics["r@1"])
    assert few.metrics["r@1_approx_sample"] == pytest.approx(few.metrics["r@1"])
    # Ranks beyond the searched k are misses, never better than exact ranks.
    assert (few.ranks >= exact.ranks).all()


def test_first_positive_in_blocks_matches_a_loop():
    from geobench.eval.approx import _first_positive

    rng = np.random.default_rng(3)
    top = rng.integers(-1, 50, size=(30, 8))
    pos = CSR.from_lists([sorted(set(rng.integers(0, 50, rng.integers(0, 4)).tolist()))
                          for _ in range(40)]).unique()
    q0 = 7
    want = []
    for i in range(30):
        row = set(pos.row(q0 + i).tolist())
        hits = [j for j, t in enumerate(top[i]) if t >= 0 and t in row]
        want.append(hits[0] if hits else -1)
    assert _first_positive(top, q0, pos).tolist() == want


@pytest.mark.parametrize("args, message", [
    (["--search", "annoy"], "--search 'annoy': use exact or faiss:FACTORY"),
    (["--search", "faiss:IVFx"], "faiss cannot build it"),
    (["--search", "faiss:HNSW8", "--nprobe", "4"], "--nprobe does not apply to faiss:HNSW8"),
    (["--search", "faiss:Flat", "--protocol", "u1652_d2s"], "AP, which needs the exact rank"),
])
def test_cli_errors(invoke, tmp_path, args, message):
    from geobench.eval.features import write_features

    q, r, pos = _clustered(20, 200, 8)
    write_features(tmp_path / "f.h5", q, r, pos)
    res = invoke("eval", "--features", tmp_path / "f.h5", "--out", tmp_path / "out", *args)
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out" / "metrics.csv").exists()


def test_cli_writes_and_report_shows_approximate_rows(invoke, tmp_path):
    from geobench.eval.features import write_features

    q, r, pos = _clustered(100, 1000, 16)
    write_features(tmp_path / "f.h5", q, r, pos)
    res = invoke("eval", "--features", tmp_path / "f.h5", "--out", tmp_path / "runs" / "hnsw",
                 "--search", "faiss:HNSW16", "--ef-search", "8", "-q")
    assert res.exit_code == 0, res.output
    row = next(csv.DictReader((tmp_path / "runs" / "hnsw" / "metrics.csv").open()))
    assert row["search"] == "faiss:HNSW16 (efSearch=8)" and row["r@1_lost"] != ""
    assert invoke("eval", "--features", tmp_path / "f.h5", "--out", tmp_path / "runs" / "exact",
                  "-q").exit_code == 0
    table = invoke("report", tmp_path / "runs", "--format", "md").stdout
    assert "faiss:HNSW16 (efSearch=8)" in table and "R@1 lost" in table


def test_faiss_padding_is_never_a_positive():
    from geobench.eval.approx import _first_positive

    # faiss pads a short top-k row with -1; reference 0 is a positive of both queries
    top_i = np.array([[3, -1, -1], [5, 0, -1]], dtype=np.int64)
    pos = CSR.from_lists([[0], [0]])
    assert _first_positive(top_i, 0, pos).tolist() == [-1, 1]


def test_a_positive_beyond_the_searched_top_k_is_a_miss():
    q, r, _ = _clustered(50, 3000, 32, seed=2)
    worst = (q @ r.T).argmin(axis=1)  # each query's least similar reference: far beyond top-k
    pos = CSR.from_lists([[int(w)] for w in worst])
    exact = evaluate(q, r, pos, "pairs", EvalOptions())
    flat = evaluate(q, r, pos, "pairs", EvalOptions(search="faiss:Flat", exact_sample=10))
    assert (exact.ranks == 2999).all()
    assert (flat.ranks == 3000).all()  # not found: n_reference, never the width of the top-k
    assert flat.metrics["r@1"] == 0.0
