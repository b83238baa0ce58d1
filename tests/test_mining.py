from __future__ import annotations

import numpy as np
import pytest

from geobench.errors import DataError, UsageError
from geobench.geometry import gps
from geobench.geometry.radius import brute_force_links, radius_links, radius_links_latlon
from geobench.mining import (
    MineOptions,
    mine_dataset,
    nearest_neighbours,
    negative_links,
    sample_negatives,
    search,
)
from geobench.prepared import read_prepared, write_prepared


def same(a, b) -> None:
    assert np.array_equal(a.indptr, b.indptr)
    assert np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.distances, b.distances)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planar_search_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    q = rng.uniform(0, 400, (600, 2)) + [500000, 4000000]
    r = rng.uniform(0, 400, (900, 2)) + [500000, 4000000]
    r[:50] = q[:50]                    # exact duplicates (distance 0)
    r[50:60] = r[40:50]                # duplicated references
    links = radius_links(q, r, 25.0)
    same(links, brute_force_links(q, r, 25.0))
    assert links.indptr[-1] > 600
    d = links.distances
    for i in range(0, 600, 37):        # rows sorted by distance
        assert np.all(np.diff(links.row(i)[1]) >= 0)
    assert d.max() <= 25.0


def test_points_exactly_on_the_radius_are_included():
    q = np.array([[1000.0, 2000.0]])
    offsets = np.array([[15, 20], [-20, 15], [25, 0], [0, -25], [7, 24],
                        [25.000001, 0], [17, 17]], dtype=float)
    links = radius_links(q, q + offsets, 25.0)
    assert sorted(links.indices.tolist()) == [0, 1, 2, 3, 4, 6]
    assert np.sum(links.distances == 25.0) == 5  # sorted: 17,17 first
    same(links, brute_force_links(q, q + offsets, 25.0))


def test_zero_radius_finds_duplicates_only():
    pts = np.array([[0.0, 0.0], [0.0, 0.0], [1e-9, 0.0], [5.0, 5.0]])
    links = radius_links(pts[:1], pts, 0.0)
    assert links.indices.tolist() == [0, 1]


def test_latlon_search_across_the_antimeridian_equals_brute_force():
    rng = np.random.default_rng(3)
    q = np.c_[rng.uniform(-0.003, 0.003, 400), rng.uniform(179.997, 180.003, 400)]
    r = np.c_[rng.uniform(-0.003, 0.003, 700), rng.uniform(179.997, 180.003, 700)]
    q[:, 1], r[:, 1] = gps.wrap_lon(q[:, 1]), gps.wrap_lon(r[:, 1])
    links = radius_links_latlon(q, r, 40.0)
    same(links, brute_force_links(q, r, 40.0, metric="latlon"))
    qi, ri = links.pairs()
    assert np.any(np.sign(q[qi, 1]) != np.sign(r[ri, 1]))  # links cross the seam


def test_latlon_search_near_the_pole_equals_brute_force():
    rng = np.random.default_rng(4)
    q = np.c_[rng.uniform(89.9995, 90, 200), rng.uniform(-180, 180, 200)]
    r = np.c_[rng.uniform(89.9995, 90, 300), rng.uniform(-180, 180, 300)]
    same(radius_links_latlon(q, r, 20.0), brute_force_links(q, r, 20.0, metric="latlon"))


def test_dense_cluster_is_chunked_and_still_exact(monkeypatch):
    import geobench.geometry.radius as radius

    monkeypatch.setattr(radius, "CANDIDATE_BUDGET", 5000)
    rng = np.random.default_rng(5)
    q = rng.normal(0, 20, (500, 2))
    r = rng.normal(0, 20, (800, 2))
    same(radius_links(q, r, 10.0), brute_force_links(q, r, 10.0))


def test_empty_inputs_and_bad_arguments():
    links = radius_links(np.zeros((0, 2)), np.zeros((3, 2)), 5)
    assert links.n_queries == 0 and links.indptr.tolist() == [0]
    links = radius_links(np.zeros((2, 2)), np.zeros((0, 2)), 5)
    assert links.without_links().tolist() == [0, 1]
    with pytest.raises(UsageError, match="NaN"):
        radius_links(np.array([[np.nan, 0.0]]), np.zeros((1, 2)), 5)
    with pytest.raises(UsageError, match="non-negative"):
        radius_links(np.zeros((1, 2)), np.zeros((1, 2)), -1)
    with pytest.raises(UsageError, match="metric"):
        search(np.zeros((1, 2)), np.zeros((1, 2)), 1, "manhattan")


def test_sample_negatives_avoid_the_excluded_links():
    rng = np.random.default_rng(6)
    q = rng.uniform(0, 100, (50, 2))
    r = rng.uniform(0, 100, (80, 2))
    near = radius_links(q, r, 30.0)
    neg = sample_negatives(np.random.default_rng(0), near, 10)
    assert neg.shape == (50, 10) and neg.min() >= 0
    for i in range(50):
        assert not set(neg[i]) & set(near.row(i)[0].tolist())
    again = sample_negatives(np.random.default_rng(0), near, 10)
    assert np.array_equal(neg, again)
    with pytest.raises(UsageError, match="negative radius"):
        sample_negatives(rng, radius_links(q, r, 1e6), 1)


def test_nearest_neighbours_excludes_self_even_with_duplicates():
    pts = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    idx, dist = nearest_neighbours(pts, 2)
    assert idx.shape == (4, 2)
    assert all(i not in row for i, row in enumerate(idx))
    assert idx[0, 0] == 1 and dist[0, 0] == 0.0 and dist[2, 0] == 5.0
    ll = np.array([[0.0, 179.9999], [0.0, -179.9999], [0.0, 0.0]])
    idx, dist = nearest_neighbours(ll, 1, metric="latlon")
    assert idx[:2, 0].tolist() == [1, 0]
    assert dist[0, 0] == pytest.approx(gps.haversine_m(0, 179.9999, 0, -179.9999), rel=1e-9)


# --------------------------------------------------------------------------- datasets


def make_ds(tmp_path, lat0=37.77, lon0=-122.42, n_q=40, n_r=120, seed=0, utm=True,
            split="test", spread=0.002):
    rng = np.random.default_rng(seed)
    rows = []
    for role, n in (("query", n_q), ("reference", n_r)):
        lat = lat0 + rng.uniform(-spread, spread, n)
        lon = lon0 + rng.uniform(-spread, spread, n)
        e, no, _, _ = gps.latlon_to_utm(lat, lon)
        for k in range(n):
            rows.append({"uid": f"{role[0]}{k}", "split": split, "role": role, "view": "street",
                         "path": f"{role}/{k}.jpg", "lat": lat[k], "lon": lon[k],
                         "utm_e": e[k] if utm else np.nan, "utm_n": no[k] if utm else np.nan})
    semi = [{"split": split, "query": "q0", "reference": "r0", "kind": "semi_positive"}]
    return write_prepared(tmp_path / "ds", rows, semi, dataset="toy", raw_root=tmp_path)


def test_mine_dataset_writes_positives_equal_to_brute_force(tmp_path):
    ds = make_ds(tmp_path)
    report = mine_dataset(ds.root, MineOptions(split="test", radius=25.0))
    assert report.metric == "utm"
    back = read_prepared(ds.root)
    pos = back.positives[back.positives["kind"] == "positive"]
    q = back.select("test", "query")[["utm_e", "utm_n"]].to_numpy()
    r = back.select("test", "reference")[["utm_e", "utm_n"]].to_numpy()
    ref = brute_force_links(q, r, 25.0)
    assert len(pos) == ref.indptr[-1] == report.links["positive"]
    got = set(zip(pos["query"], pos["reference"], strict=False))
    qi, ri = ref.pairs()
    assert got == {(f"q{a}", f"r{b}") for a, b in zip(qi, ri, strict=False)}
    assert np.allclose(np.sort(pos["distance_m"]), np.sort(ref.distances), atol=1e-6)
    assert len(report.no_positive) == len(ref.without_links())
    assert (back.positives["kind"] == "semi_positive").sum() == 1   # kept
    assert back.manifest["parameters"]["mining"]["test"]["radius_m"] == 25.0
    again = mine_dataset(ds.root, MineOptions(split="test", radius=25.0))
    assert again.replaced == len(pos)
    assert len(read_prepared(ds.root).positives) == len(back.positives)


def test_mine_train_split_adds_train_positives_and_negatives(tmp_path):
    ds = make_ds(tmp_path, split="train")
    report = mine_dataset(ds.root, MineOptions(split="train", radius=25, train_radius=10))
    back = read_prepared(ds.root)
    kinds = back.positives["kind"].value_counts()
    assert kinds["train_positive"] == report.links["train_positive"] < kinds["positive"]
    assert back.positives.loc[back.positives["kind"] == "train_positive", "distance_m"].max() <= 10
    near = negative_links(back, "train", 25.0)
    assert near.indptr[-1] == kinds["positive"]


def test_mine_without_utm_uses_great_circle(tmp_path):
    ds = make_ds(tmp_path, utm=False)
    report = mine_dataset(ds.root, MineOptions(split="test", radius=25.0))
    assert report.metric == "latlon"
    utm = mine_dataset(make_ds(tmp_path / "b").root, MineOptions(split="test", radius=25.0))
    # UTM scale error near the zone edge is ~0.03%: nearly the same links
    assert abs(report.links["positive"] - utm.links["positive"]) <= 3


def test_mixed_utm_zones_are_refused_unless_latlon(tmp_path):
    ds = make_ds(tmp_path, lat0=45.0, lon0=-120.0, spread=0.001)   # straddles zones 10/11
    with pytest.raises(DataError, match=r"spans? UTM zones 10, 11.*--metric latlon"):
        mine_dataset(ds.root, MineOptions(split="test"))
    report = mine_dataset(ds.root, MineOptions(split="test", metric="latlon"))
    assert report.metric == "latlon"


def test_mine_error_paths(tmp_path):
    ds = make_ds(tmp_path)
    with pytest.raises(DataError, match="split 'train' has no queries"):
        mine_dataset(ds.root, MineOptions(split="train"))
    with pytest.raises(DataError, match="not a directory"):
        mine_dataset(tmp_path / "missing", MineOptions())
    with pytest.raises(UsageError, match="--metric"):
        MineOptions(metric="euclid")
    index = ds.index.copy()
    index.loc[3, ["utm_e", "lat"]] = np.nan
    bad = write_prepared(tmp_path / "bad", index, [], dataset="toy", raw_root=tmp_path)
    with pytest.raises(DataError, match=r"index.csv:5: 'q3' has no utm_e/utm_n or lat/lon"):
        mine_dataset(bad.root, MineOptions())


def test_cli_mine(tmp_path):
    from typer.testing import CliRunner

    from geobench.cli import app

    ds = make_ds(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["mine", str(ds.root), "--radius", "25", "-q"])
    assert res.exit_code == 0, res.output
    assert "positive" in res.stdout and "utm" in res.stdout
    assert (read_prepared(ds.root).positives["kind"] == "positive").any()
    res = runner.invoke(app, ["mine", str(ds.root), "--split", "val"])
    assert res.exit_code != 0 and "split 'val' has no queries" in res.stderr
    mixed = make_ds(tmp_path / "m", lat0=45.0, lon0=-120.0, spread=0.001)
    before = (mixed.root / "positives.csv").read_bytes()
    res = runner.invoke(app, ["mine", str(mixed.root)])
    assert res.exit_code != 0 and "--metric latlon" in res.stderr
    assert (mixed.root / "positives.csv").read_bytes() == before
    res = runner.invoke(app, ["mine", str(mixed.root), "--metric", "latlon", "-q"])
    assert res.exit_code == 0 and "latlon" in res.stdout
