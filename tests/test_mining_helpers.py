"""The training helpers of geobench.mining and its option checks (issue 18)."""
from __future__ import annotations

import numpy as np
import pytest

from geobench.errors import UsageError
from geobench.geometry.radius import Links, brute_force_links, radius_links
from geobench.mining import (
    MineOptions,
    hard_positives,
    mine_dataset,
    nearest_neighbours,
    negative_links,
    resolve_metric,
    sample_negatives,
)
from geobench.prepared import read_prepared, write_prepared
from tests.test_mining import make_ds


def links_from_rows(rows: list[list[int]], n_references: int) -> Links:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.array([i for r in rows for i in r], dtype=np.int64)
    return Links(indptr, indices, np.zeros(len(indices)), n_references)


def test_sample_negatives_without_any_excluded_link():
    neg = sample_negatives(np.random.default_rng(0), links_from_rows([[], [], []], 5), 4)
    assert neg.shape == (3, 4) and neg.dtype == np.int64 and neg.min() >= 0 and neg.max() < 5


@pytest.mark.parametrize("rows", [[[0, 1], [2], []], [[], [0, 1, 2], [3]], [[], [4], []]])
def test_sample_negatives_when_some_queries_have_no_excluded_link(rows):
    links = links_from_rows(rows, 5)
    neg = sample_negatives(np.random.default_rng(1), links, 50)
    for i, banned in enumerate(rows):
        assert not set(neg[i].tolist()) & set(banned)
        assert set(neg[i].tolist()) == set(range(5)) - set(banned)  # 50 draws reach them all


def test_sample_negatives_with_a_single_allowed_reference():
    links = links_from_rows([[0, 1, 2, 4], [1, 2, 3, 4]], 5)
    neg = sample_negatives(np.random.default_rng(2), links, 6)
    assert neg[0].tolist() == [3] * 6 and neg[1].tolist() == [0] * 6


def test_sample_negatives_are_uniform_over_the_allowed():
    links = links_from_rows([[2]], 4)
    neg = sample_negatives(np.random.default_rng(3), links, 6000)
    counts = np.bincount(neg[0], minlength=4)
    assert counts[2] == 0
    assert np.all(np.abs(counts[[0, 1, 3]] - 2000) < 200)


def test_sample_negatives_count_zero_and_fully_banned_query():
    full = links_from_rows([[0, 1, 2], []], 3)
    assert sample_negatives(np.random.default_rng(0), full, 0).shape == (2, 0)
    with pytest.raises(UsageError, match="query row 0 has no reference beyond"):
        sample_negatives(np.random.default_rng(0), full, 1)
    # the first row with nothing allowed is named, not the first with little allowed
    with pytest.raises(UsageError, match="query row 1 has no reference beyond"):
        sample_negatives(np.random.default_rng(0), links_from_rows([[0, 1], [0, 1, 2]], 3), 1)


def test_mine_options_radius_checks():
    assert MineOptions(radius=0.5, train_radius=None, negative_radius=0.0).radius == 0.5
    for name in ("radius", "train_radius", "negative_radius"):
        for bad in (-1.0, float("nan"), float("inf")):
            with pytest.raises(UsageError, match=f"--{name.replace('_', '-')} .* non-negative"):
                MineOptions(**{name: bad})


def test_nearest_neighbours_arguments_and_shapes():
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0]])
    with pytest.raises(UsageError, match="k=0 neighbours"):
        nearest_neighbours(pts, 0)
    idx, dist = nearest_neighbours(pts, 1)
    assert idx[:, 0].tolist() == [1, 0, 1, 2] and dist[:, 0].tolist() == [1.0, 1.0, 2.0, 4.0]
    idx, dist = nearest_neighbours(pts, 2, exclude_self=False)
    assert idx[:, 0].tolist() == [0, 1, 2, 3] and np.all(dist[:, 0] == 0.0)
    idx, _ = nearest_neighbours(pts, 10)           # more than there are: all the others
    assert idx.shape == (4, 3) and sorted(idx[3].tolist()) == [0, 1, 2]
    for bad in (pts[:1], pts[:0]):                  # nobody else to be a neighbour
        with pytest.raises(UsageError, match="at least one other point"):
            nearest_neighbours(bad, 1)
    assert nearest_neighbours(pts[:1], 1, exclude_self=False)[0].tolist() == [[0]]
    with pytest.raises(UsageError, match="metric 'euclid'"):
        nearest_neighbours(pts, 1, metric="euclid")
    with pytest.raises(UsageError, match=r"points must be an \(N, 2\) array"):
        nearest_neighbours(pts[:, 0], 1)


def test_nearest_neighbours_of_many_duplicates_never_return_self():
    # six identical points: the tree may or may not list a point itself among its k+1
    # nearest, so each row must drop exactly itself or else its last column
    pts = np.zeros((6, 2))
    idx, dist = nearest_neighbours(pts, 2)
    assert idx.shape == dist.shape == (6, 2) and np.all(dist == 0.0)
    assert all(i not in row for i, row in enumerate(idx.tolist()))


def two_split_ds(tmp_path, utm=True):
    """make_ds's train rows plus a shifted copy of them as split "test"."""
    train = make_ds(tmp_path / "a", split="train", utm=utm, n_q=30, n_r=90)
    test = train.index.copy()
    test["split"], test["uid"] = "test", "t" + test["uid"]
    test["lat"] += 0.00003
    if utm:
        test["utm_n"] += 3.3
    index = [*train.index.to_dict("records"), *test.to_dict("records")]
    return write_prepared(tmp_path / "ds", index, [], dataset="toy", raw_root=tmp_path,
                          parameters={"source": "kept"})


def brute(ds, split, radius, metric):
    cols = ["utm_e", "utm_n"] if metric == "utm" else ["lat", "lon"]
    q = ds.select(split, "query")[cols].to_numpy()
    r = ds.select(split, "reference")[cols].to_numpy()
    return brute_force_links(q, r, radius, metric=metric)


def same_links(a, b):
    assert np.array_equal(a.indptr, b.indptr) and a.indptr[-1] > 0
    assert np.array_equal(a.indices, b.indices)
    assert np.allclose(a.distances, b.distances, rtol=0, atol=1e-9)


@pytest.mark.parametrize("helper, radius", [(hard_positives, 10.0), (negative_links, 25.0)])
def test_training_link_helpers_default_to_the_train_split_and_auto_metric(tmp_path, helper,
                                                                          radius):
    ds = two_split_ds(tmp_path)
    links = helper(ds, radius=radius) if helper is hard_positives else helper(
        ds, negative_radius=radius)
    assert links.n_queries == 30                       # train only, not train + test
    same_links(links, brute(ds, "train", radius, "utm"))
    same_links(helper(ds, "test", radius), brute(ds, "test", radius, "utm"))
    same_links(helper(ds, "train", radius, "latlon"), brute(ds, "train", radius, "latlon"))
    no_utm = two_split_ds(tmp_path / "ll", utm=False)  # auto falls back to great-circle
    same_links(helper(no_utm, "train", radius), brute(no_utm, "train", radius, "latlon"))
    with pytest.raises(UsageError, match="metric 'euclid'"):
        helper(ds, "train", radius, "euclid")


def test_hard_positive_defaults(tmp_path):
    ds = two_split_ds(tmp_path)
    same_links(hard_positives(ds), brute(ds, "train", 10.0, "utm"))
    same_links(negative_links(ds), brute(ds, "train", 25.0, "utm"))
    with pytest.raises(UsageError, match="metric 'UTM'"):
        resolve_metric(ds.index, "UTM", ds.root / "index.csv")


def test_mine_train_split_on_latlon_keeps_other_records(tmp_path):
    ds = two_split_ds(tmp_path, utm=False)
    mine_dataset(ds.root, MineOptions(split="test", radius=25.0))
    report = mine_dataset(ds.root, MineOptions(split="train", radius=25.0, train_radius=10.0,
                                               negative_radius=30.0))
    assert report.metric == "latlon"
    back = read_prepared(ds.root)
    train = back.positives[(back.positives["kind"] == "train_positive")]
    ref = brute(back, "train", 10.0, "latlon")
    assert len(train) == ref.indptr[-1] == report.links["train_positive"] > 0
    assert np.allclose(np.sort(train["distance_m"]), np.sort(ref.distances), atol=1e-6)
    params = back.manifest["parameters"]
    assert params["source"] == "kept"                  # other parameters survive
    assert set(params["mining"]) == {"test", "train"}  # each split's record survives
    assert params["mining"]["train"] == {
        "radius_m": 25.0, "train_radius_m": 10.0, "negative_radius_m": 30.0,
        "metric": "latlon", "inclusive": True, "earth_radius_m": 6371008.8}


def test_radius_links_rows_sorted_by_distance_then_reference():
    q = np.array([[0.0, 0.0]])
    r = np.array([[3.0, 4.0], [0.0, 5.0], [1.0, 0.0], [5.0, 0.0], [0.0, 2.0]])
    links = radius_links(q, r, 5.0)
    assert links.indices.tolist() == [2, 4, 0, 1, 3]
    assert links.distances.tolist() == [1.0, 2.0, 5.0, 5.0, 5.0]
