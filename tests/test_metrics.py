"""Metrics on hand-made cases and against brute-force definitions."""
from __future__ import annotations

import numpy as np
import pytest

from geobench.errors import UnknownNameError
from geobench.eval import metrics as M
from geobench.eval import ties as T
from geobench.eval.csr import CSR
from geobench.eval.evaluate import EvalOptions, evaluate
from geobench.eval.protocols import get_protocol, one_percent_k, protocol_names


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("n, rule, k", [
    (8884, "floor", 88), (8884, "vigor", 89), (8884, "u1652", 90),
    (90618, "floor", 906), (90618, "vigor", 907), (951, "u1652", 11), (951, "floor", 9),
    (250, "u1652", 3),  # Python's round(2.5) == 2, as the baseline
    (50, "floor", 1), (50, "vigor", 1), (1, "u1652", 1),
])
def test_one_percent_rules(n, rule, k):
    assert one_percent_k(n, rule) == k


def test_one_percent_rule_of_each_protocol():
    assert get_protocol("cvusa").one_percent_rule == "floor"
    assert get_protocol("vigor_same").one_percent_rule == "vigor"
    assert get_protocol("u1652_d2s").one_percent_rule == "u1652"
    assert set(protocol_names()) >= {"cvusa", "cvact_val", "cvact_test", "vigor_same",
                                     "vigor_cross", "u1652_d2s", "u1652_s2d", "vg25", "pairs"}
    with pytest.raises(UnknownNameError, match="Did you mean cvusa"):
        get_protocol("cvusaa")
    with pytest.raises(UnknownNameError):
        one_percent_k(10, "ceil")


def test_recall_and_curve_from_ranks():
    ranks = np.array([0, 0, 1, 4, 9, 100])  # 100 = n_reference: a query without positive
    t, p = np.zeros(6, np.int64), np.array([1, 1, 1, 1, 1, 0])
    for policy in T.POLICIES:  # no ties: every policy agrees
        assert T.recall_at(ranks, t, p, 1, policy) == pytest.approx(100 * 2 / 6)
        assert T.recall_at(ranks, t, p, 5, policy) == pytest.approx(100 * 4 / 6)
    k, rec = T.recall_curve(ranks, t, p, 100, "expected")
    assert k[0] == 1 and k[-1] == 100 and len(k) == 100
    assert rec[0] == pytest.approx(100 * 2 / 6) and rec[9] == pytest.approx(100 * 5 / 6)
    assert rec[-1] == pytest.approx(100 * 5 / 6)  # the miss never counts
    assert M.curve_k_max(8884, 88) == 100 and M.curve_k_max(90618, 907) == 907
    assert M.curve_k_max(40, 1) == 40


def test_hit_rate_hand_made():
    # rank 0; rank 2 from the two semi-positives; rank 2 with one other above; no positive
    g, zeros, p = np.array([0, 2, 2, 10]), np.zeros(4, np.int64), np.array([1, 1, 1, 0])
    for policy in T.POLICIES:
        hit = T.vigor_hits(g, zeros, p, np.array([0, 2, 1, 0]), zeros, policy)
        assert hit.tolist() == [1, 1, 0, 0]


def official_ap(rows_good):
    """University-1652 compute_mAP, transcribed as the definition."""
    ngood, ap = len(rows_good), 0.0
    for i in range(ngood):
        precision = (i + 1) / (rows_good[i] + 1)
        old = i / rows_good[i] if rows_good[i] != 0 else 1.0
        ap += (1 / ngood) * (old + precision) / 2
    return ap


def test_average_precision_hand_made():
    indptr = np.array([0, 2, 3, 3, 6])
    positions = np.array([0, 2, 5, 1, 2, 7])
    ap = M.average_precision(positions, indptr)
    assert ap[0] == pytest.approx((1.0 + (0.5 + 2 / 3) / 2) / 2)
    assert ap[0] == pytest.approx(official_ap([0, 2]))
    assert ap[1] == pytest.approx(official_ap([5]))
    assert ap[2] == 0.0  # no positive
    assert ap[3] == pytest.approx(official_ap([1, 2, 7]))


def test_positions_with_ties_by_policy():
    # row 0: two tied positives first, a third tied with one negative; row 1 alone
    scores = np.array([0.9, 0.9, 0.5, 0.7])
    above = np.array([0, 0, 3, 2])
    tied = np.array([2, 2, 2, 1])
    indptr = np.array([0, 3, 4])
    ap = {p: T.average_precision(above, tied, scores, indptr, p) for p in T.POLICIES}
    np.testing.assert_allclose(ap["optimistic"], M.average_precision(np.array([0, 1, 3, 2]), indptr))
    np.testing.assert_allclose(ap["pessimistic"], M.average_precision(np.array([0, 1, 4, 2]), indptr))
    half = (M.average_precision(np.array([0, 1, 3]), indptr[:2])
            + M.average_precision(np.array([0, 1, 4]), indptr[:2])) / 2
    assert ap["expected"][0] == pytest.approx(half[0]) and ap["expected"][1] == ap["optimistic"][1]


def brute_ap(s, positives):
    """AP from a full sort with ties in the query's favour (positives first)."""
    out = []
    for i, p in enumerate(positives):
        if not len(p):
            out.append(0.0)
            continue
        is_pos = np.zeros(s.shape[1], bool)
        is_pos[p] = True
        order = np.lexsort((~is_pos, -s[i]))
        out.append(official_ap(np.flatnonzero(is_pos[order]).tolist()))
    return np.array(out)


def test_ap_and_cmc_match_brute_force_with_many_positives():
    rng = np.random.default_rng(3)
    q = unit(rng.standard_normal((30, 12)))
    r = unit(rng.standard_normal((120, 12)))
    r[100:120] = r[0:20]  # tied duplicates
    rows = [sorted(set(rng.choice(120, size=int(rng.integers(1, 8)), replace=False)) | {i})
            for i in range(30)]
    rows[4] = []
    res = evaluate(q, r, CSR.from_lists(rows), "u1652_s2d",
                   EvalOptions(block_queries=7, block_references=16, ties="optimistic"))
    s = (q.astype(np.float64)[:, None] * r.astype(np.float64)[None]).sum(-1)
    np.testing.assert_allclose(res.per_query["ap"], brute_ap(s, rows), atol=1e-12)
    assert res.metrics["ap"] == pytest.approx(100 * brute_ap(s, rows).mean())
    assert res.metrics["k_1pct"] == round(120 * 0.01) + 1


def test_vigor_hit_rate_through_evaluate():
    q = unit([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    r = unit([[0.5, 0.5], [0.9, 0.1], [0.8, 0.2], [1.0, 0.05], [0.0, 1.0]])
    pos = CSR.from_lists([[2], [1], [4]])
    semi = CSR.from_lists([[1, 3], [3], []])
    res = evaluate(q, r, pos, "vigor_same", semi_positives=semi)
    # q0: references 1 and 3 beat the positive, both semi -> hit; q1: 3 semi -> hit
    # q2: positive is worst, no semi -> rank 4, no hit
    assert res.ranks.tolist() == [2, 1, 4]
    assert res.per_query["hit"].tolist() == [True, True, False]
    assert res.metrics["hit_rate"] == pytest.approx(200 / 3)
    assert res.metrics["r@1"] == 0.0
    skipped = evaluate(q, r, pos, "vigor_same")
    assert "hit_rate" not in skipped.metrics and any("semi" in n for n in skipped.notes)


def test_vigor_metre_error_of_the_top1():
    q = unit([[1.0, 0.0], [0.0, 1.0]])
    r = unit([[1.0, 0.01], [0.01, 1.0]])
    ll_r = np.array([[40.0, -75.0], [41.0, -75.0]])
    ll_q = np.array([[40.0, -75.0], [40.0, -75.0]])
    res = evaluate(q, r, CSR.from_lists([[0], [0]]), "vigor_cross",
                   query_latlon=ll_q, reference_latlon=ll_r)
    one_degree = M.EARTH_RADIUS_M * np.pi / 180
    np.testing.assert_allclose(res.per_query["error_m"], [0.0, one_degree], rtol=1e-9)
    assert res.metrics["error_median_m"] == pytest.approx(one_degree / 2)
    assert res.metrics["acc@1m"] == 50.0


def test_vg_queries_without_positives_are_misses():
    q = unit([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]])
    r = unit([[1.0, 0.0], [0.0, 1.0]])
    res = evaluate(q, r, CSR.from_lists([[0], [1], [], []]), "vg25")
    assert res.metrics["r@1"] == 50.0 and res.metrics["r@20"] == 50.0
    assert res.metrics["n_no_positive"] == 2
    assert res.curve_recall[-1] == 50.0


def test_great_circle():
    assert M.great_circle_m(0.0, 0.0, 0.0, 0.0) == 0.0
    d = M.great_circle_m(np.array([40.0]), np.array([-75.0]), np.array([40.0]),
                         np.array([-75.0 + 1e-5]))
    assert d[0] == pytest.approx(M.EARTH_RADIUS_M * np.radians(1e-5) * np.cos(np.radians(40)),
                                 rel=1e-6)


def test_error_summary_is_computed_in_float64_whatever_the_input_dtype():
    rng = np.random.default_rng(3)
    errors = (rng.random(10_001) * 40).astype(np.float32)
    want = M.error_summary(errors.astype(np.float64))
    got = M.error_summary(errors)
    assert got == want  # bit for bit: a float32 mean differs in its last digits
    assert want["error_mean_m"] == float(np.mean(errors.astype(np.float64)))
