"""Evaluation paths the mutation run found untested (issue 18): the top-K merge over wide
reference blocks, protocol view selection, the R@K columns each protocol reports and the
metre-error summary. Written against behaviour independent of the tie policy."""
from __future__ import annotations

import numpy as np
import pytest

from geobench.errors import DataError, UsageError
from geobench.eval import metrics as M
from geobench.eval.csr import CSR
from geobench.eval.evaluate import EvalOptions, evaluate
from geobench.eval.protocols import eval_sets, get_protocol, protocol_names
from geobench.eval.search import SearchOptions, search
from geobench.prepared import write_prepared


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def wide():
    """20 queries against 4,100 references: wider than the 1,024-column first segment."""
    rng = np.random.default_rng(11)
    r = unit(rng.standard_normal((4100, 32)))
    q = unit(r[rng.choice(4100, 20, replace=False)] + 0.6 * rng.standard_normal((20, 32)))
    s = q.astype(np.float64) @ r.astype(np.float64).T
    order = np.argsort(-s, axis=1, kind="stable")
    return q, r, s, order


@pytest.mark.parametrize("options", [
    SearchOptions(),                                            # one block: segment doubling
    SearchOptions(block_queries=7, block_references=1500),     # doubling, then fused passes
    SearchOptions(block_queries=20, block_references=4100, memory_bytes=4096),  # tiny buffer
    SearchOptions(backend="torch", device="cpu", block_queries=9, block_references=2500),
], ids=["auto", "1500-wide", "small-buffer", "torch"])
@pytest.mark.parametrize("k", [1, 10])
def test_topk_over_thousands_of_references_equals_brute_force(wide, options, k, both_passes):
    q, r, s, order = wide
    gap = np.take_along_axis(s, order[:, k - 1:k + 1], 1)
    assert np.all(gap[:, 0] - gap[:, 1] > 1e-5)                 # no near-tie at the cut
    res = search(q, r, CSR.from_lists([[0]] * 20), k=k, options=options)
    assert np.array_equal(res.topk_indices, order[:, :k])
    want = np.take_along_axis(s, order[:, :k], 1)
    assert np.allclose(res.topk_scores, want, atol=1e-5)
    assert np.all(np.diff(res.topk_scores, axis=1) <= 0)


@pytest.fixture
def workers(monkeypatch):
    """Tiny tiles and three search workers taking query blocks of a few rows."""
    from geobench.eval import blocks, threads

    monkeypatch.setattr(blocks.NumpyEngine, "tile_bytes", 4096)
    monkeypatch.setattr(threads, "MIN_ROWS", 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    return threads


@pytest.mark.parametrize("k", [1, 10])
def test_topk_with_query_blocks_side_by_side_equals_brute_force(wide, workers, k,
                                                               both_passes):
    q, r, s, order = wide
    assert workers.search_workers("numpy", 20) == 3
    res = search(q, r, CSR.from_lists([[i] for i in range(20)]), k=k,
                 options=SearchOptions(block_queries=7, block_references=1500))
    assert res.topk_indices.tolist() == order[:, :k].tolist()
    assert res.ranks.tolist() == [int((s[i] > s[i, i]).sum()) for i in range(20)]


def test_topk_keeps_smaller_reference_numbers_among_thousands_of_ties(workers, both_passes):
    """Every reference scores the same: the K best are the first K, whatever the blocks,
    threads and pruning of the running top-K."""
    q = unit(np.ones((30, 4)))
    r = unit(np.ones((3000, 4)))
    for options in (SearchOptions(), SearchOptions(block_queries=8, block_references=700)):
        res = search(q, r, CSR.from_lists([[2999]] * 30), k=25, options=options)
        assert res.topk_indices.tolist() == [list(range(25))] * 30
        assert res.ranks.tolist() == [0] * 30 and res.tied_nonpositives.tolist() == [2999] * 30


def test_topk_when_every_new_reference_beats_the_running_best(workers, both_passes):
    """References sorted from worst to best: each block brings more candidates than the
    running top-K holds (its buffer overflows within one tile)."""
    rng = np.random.default_rng(3)
    q = unit(rng.standard_normal((12, 16)))
    r = unit(rng.standard_normal((2600, 16)))
    r = r[np.argsort(r @ q[0])]  # ascending similarity to query 0
    s = q.astype(np.float64) @ r.astype(np.float64).T
    order = np.argsort(-s, axis=1, kind="stable")
    res = search(q, r, CSR.from_lists([[0]] * 12), k=10,
                 options=SearchOptions(block_queries=5, block_references=1300))
    assert res.topk_indices.tolist() == order[:, :10].tolist()
    assert res.topk_indices[0].tolist() == list(range(2599, 2589, -1))


def test_search_refuses_one_dimensional_descriptors():
    q = unit(np.eye(3))
    with pytest.raises(UsageError, match="must be 2-D"):
        search(q[0], q, CSR.from_lists([[0]]))
    with pytest.raises(UsageError, match="must be 2-D"):
        search(q, q[0], CSR.from_lists([[0]] * 3))


# --------------------------------------------------------------------------- protocols


def prepared(tmp_path, views: dict[str, list[str]], name="toy"):
    """Split "test": one query and one reference per listed view, paired by item."""
    rows, links = [], []
    for role, role_views in views.items():
        for view in role_views:
            for i in range(3):
                rows.append({"uid": f"{view}/{role}/{i}", "split": "test", "role": role,
                             "view": view, "path": f"{view}/{role}/{i}.jpg", "item": str(i),
                             "lat": 40.0 + i / 1000, "lon": -80.0})
    for q in (r for r in rows if r["role"] == "query"):
        for ref in (r for r in rows if r["role"] == "reference" and r["item"] == q["item"]):
            links.append({"split": "test", "query": q["uid"], "reference": ref["uid"],
                          "kind": "positive"})
        other = f"{rows[-1]['view']}/reference/{(int(q['item']) + 1) % 3}"
        links.append({"split": "test", "query": q["uid"], "reference": other,
                      "kind": "semi_positive"})
    return write_prepared(tmp_path / name, rows, links, dataset=name, raw_root=tmp_path)


def test_protocol_view_preference_without_forced_views(tmp_path):
    ds = prepared(tmp_path, {"query": ["ground"], "reference": ["polar", "aerial"]})
    sets = eval_sets(ds, "test", "cvusa")
    assert set(sets.queries["view"]) == {"ground"} and set(sets.references["view"]) == {"aerial"}
    assert [sets.positives.row(i).tolist() for i in range(3)] == [[0], [1], [2]]
    assert sets.semi_positives is None and sets.query_latlon.shape == (3, 2)
    forced = eval_sets(ds, "test", "cvusa", reference_view="polar")
    assert set(forced.references["view"]) == {"polar"}
    only_polar = prepared(tmp_path, {"query": ["ground"], "reference": ["polar"]}, "p")
    assert set(eval_sets(only_polar, "test", "cvusa").references["view"]) == {"polar"}
    # "pairs" has no preference: every view of each role
    assert len(eval_sets(ds, "test", "pairs").references) == 6


def test_protocol_without_its_view_is_a_one_line_error(tmp_path):
    ds = prepared(tmp_path, {"query": ["ground"], "reference": ["aerial"]})
    with pytest.raises(DataError, match=r"index\.csv: no test queries with view in drone for "
                                        r"protocol u1652_d2s"):
        eval_sets(ds, "test", "u1652_d2s")
    with pytest.raises(DataError, match=r"no test references with view in drone for protocol "
                                        r"u1652_s2d"):
        eval_sets(prepared(tmp_path, {"query": ["aerial"], "reference": ["aerial"]}, "a"),
                  "test", "u1652_s2d")
    with pytest.raises(DataError, match="no train queries"):
        eval_sets(ds, "train", "cvusa")
    with pytest.raises(DataError, match="no test references with view in street"):
        eval_sets(ds, "test", "cvusa", reference_view="street")


def test_vigor_protocol_links_semi_positives(tmp_path):
    ds = prepared(tmp_path, {"query": ["ground"], "reference": ["aerial"]})
    sets = eval_sets(ds, "test", "vigor_same")
    assert [sets.semi_positives.row(i).tolist() for i in range(3)] == [[1], [2], [0]]
    assert [sets.positives.row(i).tolist() for i in range(3)] == [[0], [1], [2]]


EXPECTED_KS = {"vg25": (1, 5, 10, 20), "msls_val_740": (1, 5, 10, 20), "msls_val_all": (1, 5, 10, 20)}


@pytest.mark.parametrize("name", protocol_names())
def test_each_protocol_reports_its_recall_columns(name):
    rng = np.random.default_rng(0)
    r = unit(rng.standard_normal((40, 8)))
    q = unit(r[:12] + 0.1 * rng.standard_normal((12, 8)))
    res = evaluate(q, r, CSR.from_lists([[i] for i in range(12)]), name,
                   EvalOptions(save_topk=3))
    ks = EXPECTED_KS.get(name, (1, 5, 10))
    assert get_protocol(name).ks == ks
    recalls = sorted(k for k in res.metrics if k.startswith("r@"))
    assert recalls == sorted([f"r@{k}" for k in ks] + ["r@1%"])
    assert res.metrics["k_1pct"] == 1
    assert ("ap" in res.metrics) == name.startswith("u1652")
    assert "hit_rate" not in res.metrics                         # no semi-positives given


def test_extra_ks_are_added_to_the_protocol_columns():
    rng = np.random.default_rng(1)
    r = unit(rng.standard_normal((30, 8)))
    res = evaluate(r[:5], r, CSR.from_lists([[i] for i in range(5)]), "vg25",
                   EvalOptions(ks=(3,), save_topk=0))
    assert sorted(k for k in res.metrics if k.startswith("r@")) == \
        sorted(["r@1", "r@3", "r@5", "r@10", "r@20", "r@1%"])


# --------------------------------------------------------------------------- metrics


def test_error_summary_every_threshold():
    errors = np.array([0.5, 1.0, 4.9, 5.0, 9.99, 10.0, 24.0, 25.0, 100.0, 3.0])
    out = M.error_summary(errors)
    assert out == {"error_mean_m": pytest.approx(errors.mean()),
                   "error_median_m": pytest.approx(7.495),
                   "acc@1m": 10.0, "acc@5m": 40.0, "acc@10m": 60.0, "acc@25m": 80.0}
    assert M.error_summary(np.zeros(0)) == {}


def test_great_circle_uses_vigors_sphere():
    d = M.great_circle_m(np.array([0.0, 45.0]), np.array([0.0, 10.0]),
                         np.array([0.0, 45.0]), np.array([1.0, 10.0]))
    assert d[0] == pytest.approx(np.radians(1.0) * 6371004.0) and d[1] == 0.0
    assert M.EARTH_RADIUS_M == 6371004.0
    assert M.curve_k_max(50, 1) == 50 and M.curve_k_max(10_000, 100) == 100
    assert M.curve_k_max(90_000, 901) == 901 and M.curve_k_max(0, 1) == 1


def test_eval_sets_frames_positions_and_forced_query_view(tmp_path):
    ds = prepared(tmp_path, {"query": ["ground", "perspective"], "reference": ["aerial"]})
    sets = eval_sets(ds, "test", "cvusa")
    assert list(sets.queries.index) == [0, 1, 2] and list(sets.references.index) == [0, 1, 2]
    assert "index" not in sets.queries.columns and "index" not in sets.references.columns
    assert sets.reference_latlon.shape == (3, 2) and sets.reference_latlon[2, 0] == 40.002
    forced = eval_sets(ds, "test", "cvusa", query_view="perspective")
    assert set(forced.queries["view"]) == {"perspective"}
    assert forced.positives.indptr.tolist() == [0, 1, 2, 3]
    # a missing coordinate anywhere: no positions for that role (metre error is skipped)
    index = ds.index.copy()
    index.loc[index["role"] == "reference", "lat"] = [np.nan, 40.0, 40.0]
    gap = write_prepared(tmp_path / "gap", index, ds.positives, dataset="toy", raw_root=tmp_path)
    sets = eval_sets(gap, "test", "cvusa")
    assert sets.reference_latlon is None and sets.query_latlon is not None


def test_eval_sets_error_names_every_preferred_view(tmp_path):
    ds = prepared(tmp_path, {"query": ["ground"], "reference": ["drone"]})
    with pytest.raises(DataError, match=r"no test references with view in aerial, polar for "
                                        r"protocol cvusa; check --split and the dataset's views"):
        eval_sets(ds, "test", "cvusa")
    with pytest.raises(DataError, match=r"no val queries with view in any for protocol pairs; "
                                        r"check --split and --protocol"):
        eval_sets(ds, "val", "pairs")
    index = ds.index.copy()
    index.loc[index["role"] == "reference", "split"] = "train"   # test has queries only
    noref = write_prepared(tmp_path / "noref", index, [], dataset="toy", raw_root=tmp_path)
    with pytest.raises(DataError, match=r"no test references with view in any for protocol "
                                        r"pairs; check --split and the dataset's views"):
        eval_sets(noref, "test", "pairs")


def test_protocol_registration_checks_the_rule():
    from geobench.eval import protocols as P

    with pytest.raises(ValueError, match=r"odd: unknown R@1% rule 'ceil'"):
        P._add(P.Protocol("odd", "test protocol", one_percent_rule="ceil"))
    assert "odd" not in P.protocol_names()
    try:
        P._add(P.Protocol("odd", "test protocol", ks=(1, 3)))
        assert get_protocol("odd").ks == (1, 3)
    finally:
        P._PROTOCOLS.pop("odd", None)


def test_unknown_protocol_hints():
    from geobench.errors import UnknownNameError
    from geobench.eval.protocols import one_percent_k

    known = "Known protocols: " + ", ".join(protocol_names())
    with pytest.raises(UnknownNameError) as err:
        get_protocol("zzzz")
    assert str(err.value) == f"unknown protocol 'zzzz'. {known}"
    with pytest.raises(UnknownNameError) as err:
        get_protocol("u16")                         # similarity 0.5: inside the 0.5 cutoff
    hint = str(err.value).split("Did you mean ", 1)[1].split("?", 1)[0]
    assert str(err.value).startswith("unknown protocol 'u16'. Did you mean u1652_")
    assert sorted(hint.split(", ")) == ["u1652_d2s", "u1652_s2d"]
    with pytest.raises(UnknownNameError) as err:
        get_protocol("cvirs")                       # four names within the cutoff: three shown
    assert str(err.value).count(", ", 0, str(err.value).index("?")) == 2
    with pytest.raises(UnknownNameError, match=r"unknown R@1% rule 'ceil'; use one of floor, "
                                               r"vigor, u1652$"):
        one_percent_k(10, "ceil")


def test_great_circle_of_antipodes_is_half_the_circumference():
    # h rounds to 1 + 2**-52 for this pair; the distance must still be finite and exact
    d = M.great_circle_m(np.array([9.62810939]), np.array([0.0]), np.array([-9.62810939]),
                         np.array([180.0]))
    assert d[0] == pytest.approx(np.pi * 6371004.0)


def test_average_precision_of_a_single_positive():
    assert M.average_precision(np.array([0]), np.array([0, 1])).tolist() == [1.0]
    assert M.average_precision(np.array([3]), np.array([0, 0, 1])).tolist() == [0.0, 0.125]  # (0/3 + 1/4) / 2


def test_a_failing_worker_stops_the_search_with_its_error(workers, monkeypatch):
    from geobench.eval import blocks

    calls = []

    def broken(engine, q0, *args):
        calls.append(q0)
        raise MemoryError(f"block {q0}")

    monkeypatch.setattr(blocks, "run_query_block", broken)
    q = unit(np.ones((40, 4)))
    with pytest.raises(MemoryError, match="block"):
        search(q, q, CSR.from_lists([[0]] * 40), options=SearchOptions(block_queries=4))
    assert len(calls) <= 3  # each worker stops after its first failure


def test_topk_when_several_rows_overflow_by_different_amounts(workers):
    """Six near-identical queries see ever better references; each row's buffer
    overflows within one tile by a different count (rows padded differently)."""
    rng = np.random.default_rng(4)
    base = unit(rng.standard_normal((1, 16)))
    q = unit(base + 0.05 * rng.standard_normal((6, 16)))
    r = unit(rng.standard_normal((2000, 16)))
    r = r[np.argsort(r @ base[0])]
    s = q.astype(np.float64) @ r.astype(np.float64).T
    order = np.argsort(-s, axis=1, kind="stable")
    res = search(q, r, CSR.from_lists([[0]] * 6), k=10,
                 options=SearchOptions(block_queries=6, block_references=2000))
    assert res.topk_indices.tolist() == order[:, :10].tolist()
