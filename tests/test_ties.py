"""Tie policies against a brute force over every ordering of the tied references."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from geobench.errors import UsageError
from geobench.eval import ties as T
from geobench.eval.csr import CSR
from geobench.eval.evaluate import EvalOptions, evaluate
from geobench.eval.records import Provenance
from geobench.eval.results import read_results, write_results
from geobench.eval.search import SearchOptions, search


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def official_ap(positions):
    n, ap = len(positions), 0.0
    for i, p in enumerate(positions):
        old = i / p if p else 1.0
        ap += ((i + 1) / (p + 1) + old) / 2 / n
    return ap


def arrangements(score_row: np.ndarray, positives: list[int], policy: str):
    """Yield (sorted positive positions, probability) over the orderings of tied scores.

    Every ordering of a tie group is equally likely; what matters is which of its slots
    hold positives, so each group contributes its C(n, p) slot choices (optimistic: the
    first p slots only, pessimistic: the last p)."""
    is_pos = np.zeros(len(score_row), bool)
    is_pos[positives] = True
    choices, start = [], 0
    for value in sorted(set(score_row.tolist()), reverse=True):
        members = np.flatnonzero(score_row == value)
        n, p = len(members), int(is_pos[members].sum())
        slots = list(itertools.combinations(range(start, start + n), p))
        if policy == "optimistic":
            slots = [tuple(range(start, start + p))]
        elif policy == "pessimistic":
            slots = [tuple(range(start + n - p, start + n))]
        choices.append(slots)
        start += n
    total = math.prod(len(c) for c in choices)
    for combo in itertools.product(*choices):
        yield sorted(itertools.chain(*combo)), 1.0 / total


def brute(q, r, rows, ks, policy):
    s = (q.astype(np.float64)[:, None, :] * r.astype(np.float64)[None, :, :]).sum(-1)
    recall = {k: 0.0 for k in ks}
    ap = np.zeros(len(q))
    for i, pos in enumerate(rows):
        if not pos:
            continue
        for positions, w in arrangements(s[i], pos, policy):
            for k in ks:
                recall[k] += w * (positions[0] < k)
            ap[i] += w * official_ap(positions)
    return {k: 100 * v / len(q) for k, v in recall.items()}, ap


@pytest.fixture(scope="module")
def tied_world():
    """Duplicated references (some the positive's twin), queries equal to a reference,
    several tied positives, a collapsed block and a query without positives."""
    rng = np.random.default_rng(11)
    nr, d = 40, 6
    base = np.round(rng.standard_normal((8, d)) * 4) / 4  # few distinct vectors: many ties
    r = unit(base[rng.integers(0, 8, nr)])
    q = unit(base[rng.integers(0, 8, 14)] + (rng.random((14, 1)) < 0.5) * 0.3)
    q[10:12] = r[3]
    rows = [sorted(set(rng.choice(nr, size=int(rng.integers(1, 4)), replace=False).tolist()))
            for _ in range(14)]
    rows[5] = []  # no positive
    rows[10] = [3] + [j for j in range(nr) if j != 3 and np.array_equal(r[j], r[3])][:2]
    return q, r, rows


SEARCH = [EvalOptions(), EvalOptions(block_queries=3, block_references=7),
          EvalOptions(backend="torch", device="cpu", block_queries=5, block_references=11)]


@pytest.mark.parametrize("policy", T.POLICIES)
@pytest.mark.parametrize("opts", SEARCH, ids=["auto", "small-blocks", "torch"])
def test_every_policy_matches_the_brute_force_over_orderings(tied_world, policy, opts,
                                                             both_passes):
    q, r, rows = tied_world
    ks = (1, 2, 3, 5, 10)
    want_recall, want_ap = brute(q, r, rows, ks, policy)
    from dataclasses import replace

    res = evaluate(q, r, CSR.from_lists(rows), "u1652_s2d",
                   replace(opts, ties=policy, ks=ks, save_topk=0))
    assert res.metrics["n_tied_queries"] > 3  # the world really has ties
    for k in ks:
        assert res.metrics[f"r@{k}"] == pytest.approx(want_recall[k], abs=1e-9)
        assert res.curve_recall[k - 1] == pytest.approx(want_recall[k], abs=1e-9)
    np.testing.assert_allclose(res.per_query["ap"], want_ap, atol=1e-12)


def test_tie_counts_do_not_depend_on_the_block_plan(tied_world, both_passes):
    q, r, rows = tied_world
    pos = CSR.from_lists(rows)
    runs = [search(q, r, pos, all_positives=True, options=o) for o in (
        SearchOptions(), SearchOptions(block_queries=1, block_references=1),
        SearchOptions(block_queries=4, block_references=9),
        SearchOptions(backend="torch", device="cpu", block_queries=2, block_references=17))]
    for other in runs[1:]:
        for name in ("ranks", "tied_nonpositives", "tied_positives", "tied", "above"):
            np.testing.assert_array_equal(getattr(other, name), getattr(runs[0], name))
    s = (q.astype(np.float64)[:, None] * r.astype(np.float64)[None]).sum(-1)
    res = runs[0]
    for i, row in enumerate(rows):
        if row:
            best = s[i, row].max()
            assert res.tied_positives[i] == sum(s[i, j] == best for j in row)
            assert res.tied_nonpositives[i] == sum(s[i, j] == best for j in range(len(r))
                                                   if j not in row)
        else:
            assert res.tied_positives[i] == 0 and res.tied_nonpositives[i] == 0


def test_collapsed_descriptors_score_chance_and_warn():
    nq, nr = 6, 40
    q, r = unit(np.ones((nq, 8))), unit(np.ones((nr, 8)))
    pos = CSR.from_lists([[i] for i in range(nq)])
    got = {p: evaluate(q, r, pos, "cvusa", EvalOptions(ties=p)) for p in T.POLICIES}
    assert [got["optimistic"].metrics[f"r@{k}"] for k in (1, 5, 10)] == [100.0] * 3
    assert [got["pessimistic"].metrics[f"r@{k}"] for k in (1, 5, 10)] == [0.0] * 3
    assert [got["expected"].metrics[f"r@{k}"] for k in (1, 5, 10)] == pytest.approx(
        [100 / nr, 500 / nr, 1000 / nr])
    for res in got.values():
        assert res.metrics["n_tied_queries"] == nq
        assert "collapsed" in res.notes[0]
        assert res.tied_nonpositives.tolist() == [nr - 1] * nq
    assert got["expected"].curve_recall[-1] == pytest.approx(100.0)  # K = Nr: all found


def test_no_warning_without_ties():
    rng = np.random.default_rng(0)
    r = unit(rng.standard_normal((30, 8)))
    res = evaluate(r[:10], r, CSR.from_lists([[i] for i in range(10)]), "cvusa")
    assert res.metrics["n_tied_queries"] == 0 and not res.notes
    assert res.metrics["r@1"] == 100.0


def test_tail_probability_and_large_ties():
    t, p = np.array([3, 3, 3, 3, 3]), np.array([2, 2, 2, 2, 2])
    j = np.array([-1, 0, 1, 2, 4])
    # C(3,j)/C(5,j): 1, 1, 3/5, 3/10, 0
    np.testing.assert_allclose(T.tail(t, p, j), [1, 1, 0.6, 0.3, 0])
    assert T.tail(np.array([10 ** 6]), np.array([1]), np.array([10 ** 5]))[0] == pytest.approx(
        1 - 10 ** 5 / (10 ** 6 + 1))


def test_vigor_hit_counts_only_non_semi_ties():
    q = unit([[1.0, 0.0]] * 3)
    r = unit([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    pos = CSR.from_lists([[0], [0], [3]])
    semi = CSR.from_lists([[1], [], [0]])
    hit = {p: evaluate(q, r, pos, "vigor_same", EvalOptions(ties=p), semi_positives=semi)
           .per_query["hit"].astype(float).tolist() for p in T.POLICIES}
    # q0: tied with semi 1 (harmless) and reference 2 (not semi): 1/2 in expectation
    # q1: tied with 1 and 2, none semi: 1/3; q2: the positive is last
    assert hit["expected"] == pytest.approx([1 / 2, 1 / 3, 0.0])
    assert hit["optimistic"] == [1.0, 1.0, 0.0] and hit["pessimistic"] == [0.0, 0.0, 0.0]


def test_results_file_keeps_what_recomputes_every_policy(tmp_path, tied_world):
    q, r, rows = tied_world
    res = evaluate(q, r, CSR.from_lists(rows), "cvusa", EvalOptions(ties="pessimistic"))
    write_results(tmp_path, res, Provenance(run="x"))
    stored = read_results(tmp_path / "results.h5")
    assert stored.attrs["ties"] == "pessimistic" and "McSherry" in stored.attrs["ties_reference"]
    for policy in T.POLICIES:
        want = evaluate(q, r, CSR.from_lists(rows), "cvusa", EvalOptions(ties=policy))
        assert T.recall_at(stored.ranks, stored.tied_nonpositives, stored.tied_positives, 5,
                           policy, len(r)) == pytest.approx(want.metrics["r@5"])
    import csv

    row = next(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert row["ties"] == "pessimistic" and int(row["n_tied_queries"]) > 0


def test_unknown_policy_is_a_usage_error(tied_world):
    q, r, rows = tied_world
    with pytest.raises(UsageError, match="--ties 'fair'"):
        evaluate(q, r, CSR.from_lists(rows), "cvusa", EvalOptions(ties="fair"))
