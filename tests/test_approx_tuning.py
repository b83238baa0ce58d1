"""faiss as users expect it: --nprobe/--ef-search auto tuned on the exact sample to
--max-loss, the loss measured under the run's tie policy, and a speed-up that compares
search with search (the index build reported apart)."""
from __future__ import annotations

import csv
import types

import numpy as np
import pytest

from geobench.eval import approx as A
from geobench.eval.csr import CSR
from geobench.eval.evaluate import EvalOptions, evaluate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def clustered(nq: int, nr: int, dim: int, seed: int = 0):
    """References around 40 centres; each query a noisy copy of one reference."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    ref = centres[rng.integers(0, 40, nr)] + 0.6 * rng.normal(size=(nr, dim))
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    target = rng.choice(nr, nq, replace=False)
    qry = ref[target] + 0.25 * rng.normal(size=(nq, dim)) / np.sqrt(dim)
    qry /= np.linalg.norm(qry, axis=1, keepdims=True)
    return qry.astype(np.float32), ref.astype(np.float32), CSR.from_lists([[t] for t in target])


@pytest.fixture(scope="module")
def world():
    return clustered(300, 4000, 32, seed=1)


def test_nprobe_auto_picks_the_fewest_cells_within_the_loss(world):
    q, r, pos = world
    opts = dict(search="faiss:IVF64,Flat", exact_sample=300)
    tuned = evaluate(q, r, pos, "pairs", EvalOptions(nprobe="auto", max_loss=1.0, **opts))
    chosen = tuned.metrics["nprobe"]
    assert tuned.metrics["search"] == f"faiss:IVF64,Flat (nprobe={chosen} auto)"
    assert tuned.metrics["r@1_lost"] <= 1.0
    assert 1 < chosen < 64  # one list loses too much here, and fewer than all suffice
    # every smaller value on the grid loses more than allowed
    half = evaluate(q, r, pos, "pairs", EvalOptions(nprobe=chosen // 2, **opts))
    assert half.metrics["r@1_lost"] > 1.0
    assert "nprobe auto" in " ".join(half.notes)  # the hint to tune
    # the whole query set was searched with the chosen value: same ranks as explicit
    fixed = evaluate(q, r, pos, "pairs", EvalOptions(nprobe=chosen, **opts))
    assert np.array_equal(fixed.ranks, tuned.ranks)
    assert tuned.metrics["tune_s"] >= 0 and tuned.metrics["index_build_s"] > 0


def test_ef_search_auto_on_hnsw(world):
    q, r, pos = world
    res = evaluate(q, r, pos, "pairs", EvalOptions(search="faiss:HNSW8", ef_search="auto",
                                                   max_loss=0.0, exact_sample=300))
    ef = res.metrics["ef_search"]
    assert ef in A._grid_values("efSearch", len(r))
    assert res.metrics["r@1_lost"] <= 0.0
    assert res.metrics["search"] == f"faiss:HNSW8 (efSearch={ef} auto)"


def test_unreachable_loss_picks_the_largest_and_says_so(world):
    q, r, pos = world
    res = evaluate(q, r, pos, "pairs", EvalOptions(search="faiss:IVF16,PQ4", nprobe="auto",
                                                   max_loss=0.0, exact_sample=300))
    assert res.metrics["nprobe"] == 16
    assert res.metrics["r@1_lost"] > 0
    assert any("nprobe auto: no nprobe up to 16" in n for n in res.notes)


@pytest.fixture(scope="module")
def tied():
    """Every positive has an exact duplicate among the references: under the expected
    policy exact R@1 is 50 %, optimistically 100 %."""
    rng = np.random.default_rng(4)
    r = rng.normal(size=(200, 16)).astype(np.float32)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    r[100:] = r[:100]
    q = r[:100] + 0.01 * rng.normal(size=(100, 16)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q, r, CSR.from_lists([[i] for i in range(100)])


@pytest.mark.parametrize("policy,exact_r1", [("expected", 50.0), ("optimistic", 100.0),
                                             ("pessimistic", 0.0)])
def test_loss_uses_the_runs_tie_policy(tied, policy, exact_r1):
    q, r, pos = tied
    res = evaluate(q, r, pos, "pairs", EvalOptions(search="faiss:Flat", exact_sample=100,
                                                   ties=policy))
    m = res.metrics
    assert m["r@1_exact_sample"] == pytest.approx(exact_r1)
    assert m["r@1_approx_sample"] == pytest.approx(m["r@1"])  # the whole set is the sample
    assert m["r@1_lost"] == pytest.approx(exact_r1 - m["r@1"])


def test_speedup_compares_search_with_search(world, monkeypatch):
    """A fake clock: the build takes 100 s, the search 2 s; the exact sample 0.5 s per
    query. The speed-up is 0.5 / (2 / Nq), whatever the build cost."""
    q, r, pos = world
    now = [0.0]
    monkeypatch.setattr(A, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    build, search = A.build_index, A.search_index

    def slow_build(*args, **kw):
        now[0] += 100.0
        return build(*args, **kw)

    def timed_search(*args, **kw):
        now[0] += 2.0
        return search(*args, **kw)

    monkeypatch.setattr(A, "build_index", slow_build)
    monkeypatch.setattr(A, "search_index", timed_search)
    monkeypatch.setattr(A, "exact_sample", lambda *a, **k: A.ExactSample(
        np.arange(50), CSR.from_lists([pos.row(i) for i in range(50)]), 100.0, 0.5))
    run = A.approximate_search(q, r, pos, k=5, keep=1, options=A.ApproxOptions("Flat"),
                               sample=50)
    assert run.values["index_build_s"] == 100.0
    assert run.values["speedup"] == pytest.approx(0.5 / (2.0 / len(q)))
    assert run.values["r@1_lost"] == pytest.approx(100.0 - A.approx_r1(run.result.ranks[:50]))


@pytest.mark.parametrize("args, message", [
    (["--search", "faiss:IVF8,Flat", "--nprobe", "many"],
     "--nprobe 'many': use a positive integer or auto"),
    (["--search", "faiss:IVF8,Flat", "--nprobe", "0"], "--nprobe '0'"),
    (["--search", "faiss:HNSW8", "--ef-search", "-3"], "--ef-search '-3'"),
    (["--search", "faiss:IVF8,Flat", "--nprobe", "auto", "--max-loss", "150"],
     "--max-loss 150: must be a number in [0, 100] (points of R@1"),
    (["--search", "faiss:IVF8,Flat", "--nprobe", "auto", "--exact-sample", "0"],
     "--nprobe auto tunes on the exact sample: set --exact-sample above 0"),
    (["--search", "faiss:HNSW8", "--nprobe", "auto"], "--nprobe does not apply to faiss:HNSW8"),
])
def test_cli_errors(invoke, tmp_path, args, message):
    from geobench.eval.features import write_features

    q, r, pos = clustered(20, 400, 8)
    write_features(tmp_path / "f.h5", q, r, pos)
    res = invoke("eval", "--features", tmp_path / "f.h5", "--out", tmp_path / "out", *args)
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out" / "metrics.csv").exists()


def test_cli_records_the_chosen_value(invoke, tmp_path):
    from geobench.eval.features import write_features

    q, r, pos = clustered(100, 1000, 16)
    write_features(tmp_path / "f.h5", q, r, pos)
    res = invoke("eval", "--features", tmp_path / "f.h5", "--out", tmp_path / "out",
                 "--search", "faiss:IVF16,Flat", "--nprobe", "auto", "--max-loss", "2", "-q")
    assert res.exit_code == 0, res.output
    row = next(csv.DictReader((tmp_path / "out" / "metrics.csv").open()))
    assert row["search"] == f"faiss:IVF16,Flat (nprobe={row['nprobe']} auto)"
    assert float(row["r@1_lost"]) <= 2.0 and float(row["index_build_s"]) > 0
    assert float(row["speedup"]) > 0
