"""Descriptors larger than the memory budget are searched straight from features.h5."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from geobench.eval.csr import CSR
from geobench.eval.evaluate import EvalOptions, evaluate, evaluate_features
from geobench.eval.features import read_features, write_features
from geobench.eval.plan import take_rows
from geobench.eval.results import read_results

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(nq=150, nr=2500, dim=24, seed=0):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(nr, dim)).astype(np.float32)
    r[nr // 2:nr // 2 + 40] = r[:40]  # exact duplicates: ties must resolve identically
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    q = r[:nq] + 0.8 * rng.normal(size=(nq, dim)).astype(np.float32) / np.sqrt(dim)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    pos = CSR.from_lists([[i, (i * 7) % nr] for i in range(nq)])
    return q, r, pos


def test_take_rows_from_disk_equals_fancy_indexing(tmp_path):
    x = np.arange(60, dtype=np.float32).reshape(20, 3)
    with h5py.File(tmp_path / "x.h5", "w") as h5:
        h5["x"] = x
    idx = np.array([5, 1, 5, 19, 0, 1])
    with h5py.File(tmp_path / "x.h5", "r") as h5:
        assert np.array_equal(take_rows(h5["x"], idx), x[idx])
        assert take_rows(h5["x"], np.array([], dtype=np.int64)).shape == (0, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_streamed_evaluation_equals_in_memory(tmp_path, dtype):
    q, r, pos = _data()
    path = write_features(tmp_path / "f.h5", q, r, pos, dtype=dtype)
    with h5py.File(path) as h5:
        assert h5["/reference/descriptors"].dtype == dtype
    loaded = read_features(path)
    budget = 64 << 10  # 64 KB: far below the 250 KB of descriptors, many blocks
    options = EvalOptions(protocol="pairs", save_topk=20, memory_bytes=budget)
    want = evaluate(loaded.query, loaded.reference, pos, "pairs", options)
    summary = evaluate_features(path, tmp_path / "out", options)
    assert any("streamed from disk" in n for n in summary.notes)
    assert summary.result.plan.block_references < r.shape[0]  # really blocked
    got = read_results(summary.results_path)
    assert np.array_equal(got.ranks, want.ranks)
    # Ranks do not depend on the block plan at all (canonical scores decide ties).
    whole = evaluate(loaded.query, loaded.reference, pos, "pairs", EvalOptions())
    assert np.array_equal(got.ranks, whole.ranks)
    assert np.array_equal(got.topk_indices, want.topk_indices)


def test_streamed_file_stays_closed_and_normalise_is_refused(tmp_path):
    q, r, pos = _data(20, 300, 8)
    path = write_features(tmp_path / "f.h5", q, 2 * r, pos)
    feats = read_features(path, stream=False, normalise=True)
    assert feats.normalised and not feats.streamed
    with pytest.raises(Exception, match="streamed from disk, so --normalise cannot fix"):
        read_features(path, stream=True, normalise=True)
    ok = write_features(tmp_path / "g.h5", q, r, pos)
    feats = read_features(ok, stream=True)
    assert feats.streamed and isinstance(feats.reference, h5py.Dataset)
    feats.close()
    with h5py.File(ok, "a"):
        pass  # no handle left open


def _eval_rank(rank: int, world: int, port: int, run: str, ds: str, out: str) -> None:
    import os

    import torch

    from geobench.progress import set_quiet
    from geobench.train.runeval import evaluate_run
    from tests._train_world import register_test_model

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    set_quiet(True)
    register_test_model()
    summary = evaluate_run(run, ds, "test", out=out, batch_size=2, features_dtype="float16")
    assert (summary is None) == (rank != 0)


def test_sharded_embedding_equals_one_process(tmp_path):
    """torchrun-style eval: two gloo ranks embed halves into shard files, rank 0 merges
    them into the same features.h5 one process writes, and evaluates once."""
    import socket

    import torch

    from geobench.progress import set_quiet
    from geobench.train import cards
    from geobench.train.checkpoint import save_checkpoint
    from geobench.train.runeval import evaluate_run
    from tests._train_world import register_test_model, write_world

    set_quiet(True)
    name = register_test_model()
    ds = write_world(tmp_path / "w", n_train=2, n_test=7)  # odd: uneven shards
    torch.manual_seed(0)
    model = cards.build(name, None, {"dropout": 0.0})
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "checkpoint.pt", {"model": name, "model_args": {"dropout": 0.0},
                                            "model_state": model.state_dict(), "step": 0})
    one = evaluate_run(run, ds, "test", out=tmp_path / "one", batch_size=2,
                       features_dtype="float16")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_eval_rank, args=(2, port, str(run), str(ds),
                                                  str(tmp_path / "two")), nprocs=2, join=True)
    a, b = read_features(one.results_path.parent / "features.h5"), \
        read_features(tmp_path / "two" / "features.h5")
    assert a.query.dtype == np.float16 and a.query.shape == (7, 16)
    np.testing.assert_array_equal(a.query, b.query)
    np.testing.assert_array_equal(a.reference, b.reference)
    assert a.query_uids == b.query_uids and np.array_equal(a.positives.indices, b.positives.indices)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["features.h5", "metrics.csv",
                                                                    "results.h5"]
    assert np.array_equal(read_results(tmp_path / "two" / "results.h5").ranks, one.result.ranks)


def test_features_dtype_is_checked_before_embedding(invoke, tmp_path):
    from tests._train_world import register_test_model, write_world

    name = register_test_model()
    ds = write_world(tmp_path / "w")
    run = tmp_path / "run"
    assert invoke("train", name, "--data", ds, "--out", run, "--workers", "0", "--max-steps",
                  "1", "-q").exit_code == 0
    res = invoke("eval", run, "--data", ds, "--features-dtype", "int8")
    assert res.exit_code == 2 and "--features-dtype 'int8': use float32 or float16" in res.output
    assert not (run / "eval").exists() or not list((run / "eval").rglob("features.h5"))
