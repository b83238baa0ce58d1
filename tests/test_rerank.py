"""Shortlist re-ranking: hybrid ranks against a brute-force ordering, the image pair scorer,
and `geobench eval RUN --rerank K` end to end on a tiny ASA-VG run."""
from __future__ import annotations

import numpy as np
import pytest

from geobench.eval.csr import CSR
from geobench.eval.evaluate import EvalOptions, evaluate
from geobench.eval.plan import pair_scores
from geobench.eval.rerank import rerank_result
from geobench.eval.search import search

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _world(nq: int = 12, nr: int = 40, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    q, r = unit(rng.normal(size=(nq, d))), unit(rng.normal(size=(nr, d)))
    pos = CSR.from_lists([rng.choice(nr, size=1 + i % 2, replace=False) for i in range(nq)])
    pair = rng.normal(size=(nq, nr))  # the "model's" pair score of every pair
    return q, r, pos, pair


def brute_rank(q, r, pos, pair, i: int, k: int) -> tuple[int, list[int]]:
    """Position of the first positive in: top-k by global score re-sorted by pair score, then the rest."""
    glob = pair_scores(q, r, np.full(len(r), i), np.arange(len(r)))
    order = sorted(range(len(r)), key=lambda j: (-glob[j], j))
    short, rest = order[:k], order[k:]
    final = sorted(short, key=lambda j: (-pair[i, j], j)) + rest
    positives = set(pos.row(i).tolist())
    return next(n for n, j in enumerate(final) if j in positives), final


@pytest.mark.parametrize("k", [1, 5, 40])
def test_hybrid_ranks_equal_the_brute_force_ordering(k):
    q, r, pos, pair = _world()
    res = search(q, r, pos, k=max(k, 20))
    out = rerank_result(res, q, r, k, lambda s: pair[np.arange(len(q))[:, None], s])
    for i in range(len(q)):
        want, final = brute_rank(q, r, pos, pair, i, k)
        assert out.ranks[i] == want and out.tied_nonpositives[i] == 0 and out.tied_positives[i] == 1
        assert out.topk_indices[i].tolist() == final[:out.topk_indices.shape[1]]
        # Only the shortlist moves: its members stay the same, the rest keeps the global order.
        assert set(out.topk_indices[i, :k]) == set(res.topk_indices[i, :k])
        assert (out.topk_indices[i, k:] == res.topk_indices[i, k:]).all()
    if k == 40:  # the whole gallery: ranks are those of the pair score alone
        truth = [int((pair[i] > max(pair[i, j] for j in pos.row(i))).sum()) for i in range(len(q))]
        assert out.ranks.tolist() == truth


def test_positive_outside_the_shortlist_keeps_its_global_place_behind_it():
    q, r, pos, pair = _world(seed=3)
    res = search(q, r, pos, k=5)
    k = 3
    out = rerank_result(res, q, r, k, lambda s: pair[np.arange(len(q))[:, None], s])
    outside = res.ranks >= k
    assert outside.any()
    assert (out.ranks[outside] == res.ranks[outside]).all()  # no ties: K + g - K
    assert (out.ranks[~outside] < k).all()


def test_evaluate_records_k_and_refuses_what_it_cannot_rerank():
    from geobench.errors import UsageError

    q, r, pos, pair = _world()
    scorer = lambda s: pair[np.arange(len(q))[:, None], s]  # noqa: E731
    result = evaluate(q, r, pos, "pairs", EvalOptions(rerank=5, save_topk=3), reranker=scorer)
    assert result.metrics["rerank_k"] == 5 and "beyond K from global search" in result.metrics["rerank"]
    plain = evaluate(q, r, pos, "pairs", EvalOptions(save_topk=3))
    assert "rerank_k" not in plain.metrics
    assert (result.ranks != plain.ranks).any()
    with pytest.raises(UsageError, match="features file holds descriptors only"):
        evaluate(q, r, pos, "pairs", EvalOptions(rerank=5))
    with pytest.raises(UsageError, match="--rerank 0"):
        evaluate(q, r, pos, "u1652_d2s", EvalOptions(rerank=5), reranker=scorer)
    with pytest.raises(UsageError, match=">= 0"):
        evaluate(q, r, pos, "pairs", EvalOptions(rerank=-1), reranker=scorer)


@pytest.fixture(scope="module")
def asavg_run(tmp_path_factory):
    from geobench.progress import set_quiet
    from geobench.train.config import resolve_config
    from geobench.train.engine import train
    from tests._train_world import write_world

    set_quiet(True)
    tmp = tmp_path_factory.mktemp("asavg")
    ds = write_world(tmp / "w", n_train=4, n_test=6, query_view="perspective",
                     reference_view="ground", pano_size=(32, 128), aerial_size=32)
    cfg = resolve_config("asavg", ds, tmp / "run", preset="tiny",
                         cli={"workers": 0, "eval_every": 0, "max_steps": 1, "batch_size": 2})
    train(cfg)
    return tmp / "run", ds


def test_image_pair_scorer_is_exact_under_any_memory_budget(asavg_run):
    import torch

    from geobench.prepared import read_prepared
    from geobench.train.pairscore import ImagePairScorer, ImageSet
    from geobench.train.runeval import eval_plan, load_run_model

    run, ds = asavg_run
    model, _ = load_run_model(run / "checkpoint.pt")
    _, qs, rs, qp, rp = eval_plan(model, read_prepared(ds), "test", None)
    short = np.array([[(i + j) % 6 for j in range(3)] for i in range(6)])
    scorer = lambda mem: ImagePairScorer(model, ImageSet(qp, qs), ImageSet(rp, rs),  # noqa: E731
                                         batch_size=4, memory_bytes=mem, pair_batch=4)
    big, small = scorer(2 << 30)(short), scorer(1)(short)  # 1 byte: one image per block
    np.testing.assert_allclose(small, big, atol=1e-6)
    from geobench.train.data import ImageDataset

    load = lambda p, s: torch.stack(list(ImageDataset(p, s, model.card)))  # noqa: E731
    with torch.no_grad():
        full = model.pairwise_score(model.features(load(qp, qs), qs.model_view),
                                    model.features(load(rp, rs), rs.model_view)).numpy()
    np.testing.assert_allclose(big, full[np.arange(6)[:, None], short], atol=1e-5)


def test_eval_rerank_end_to_end(asavg_run, invoke, tmp_path):
    import h5py

    from geobench.eval.results import read_metrics
    from geobench.train.runeval import evaluate_run

    run, ds = asavg_run
    default = evaluate_run(run, ds, "test", EvalOptions(save_topk=6), out=tmp_path / "a")
    assert default.result.metrics["rerank_k"] == 6  # the card's 50, capped at the gallery
    off = evaluate_run(run, ds, "test", EvalOptions(rerank=0, save_topk=6), out=tmp_path / "b")
    # Switching the card's re-ranking off leaves a trace in metrics.csv and results.h5.
    assert off.result.metrics["rerank_k"] == 0 and "off (--rerank 0)" in off.result.metrics["rerank"]
    assert "top 50" in off.result.metrics["rerank"]
    off_row = read_metrics(tmp_path / "b" / "metrics.csv").iloc[0]
    assert off_row["rerank_k"] == 0 and off_row["rerank"].startswith("off (--rerank 0)")
    with h5py.File(tmp_path / "b" / "results.h5") as h5:
        assert '"rerank_k": 0' in h5.attrs["metrics"]
    two = evaluate_run(run, ds, "test", EvalOptions(rerank=2, save_topk=6), out=tmp_path / "c")
    row = read_metrics(tmp_path / "c" / "metrics.csv").iloc[0]
    assert row["rerank_k"] == 2 and "global search" in row["rerank"]
    with h5py.File(tmp_path / "c" / "results.h5") as h5:
        assert '"rerank_k": 2' in h5.attrs["metrics"]
        top = h5["topk/indices"][()]
    base = off.result.topk_indices
    for i in range(len(base)):  # re-ordered inside the top 2 only
        assert set(top[i, :2]) == set(base[i, :2]) and (top[i, 2:] == base[i, 2:]).all()
    assert two.result.topk_scores[:, :2].tolist() != off.result.topk_scores[:, :2].tolist()
    bad = invoke("eval", "--features", tmp_path / "b" / "features.h5", "--out", tmp_path / "d",
                 "--rerank", "3")
    assert bad.exit_code != 0 and "descriptors only" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_benchmark_rows_follow_the_contract(monkeypatch):
    from geobench.bench import BenchRow
    from geobench.bench import rerank as bench

    monkeypatch.setattr(bench, "KS", (2, 4))
    monkeypatch.setattr(bench, "SIZES", {True: (2, 6)})
    rows = [BenchRow.from_dict(r, stage="models") for r in bench.run(quick=True)]
    assert [r.case for r in rows] == ["asavg tiny re-rank top 2 (Nq=2, Nr=6) cpu",
                                      "asavg tiny re-rank top 4 (Nq=2, Nr=6) cpu"]
    assert all(r.unit == "queries/s" and r.value > 0 and r.floor > 0 for r in rows)
