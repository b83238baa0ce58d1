"""Behaviours of geobench.geometry.radius that mutation testing (issue 18) found unchecked.

The oracle is either a closed form or `brute_force_links` (all pairs); the point sets are
built so that a search cell even slightly narrower than the radius, a fast sort that
misorders ties, or a chunking loop that mishandles a dense area would show.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from geobench.errors import UsageError
from geobench.geometry import radius
from geobench.geometry.gps import EARTH_RADIUS_M, haversine_m


def _as_lists(links):
    return [(links.row(i)[0].tolist(), links.row(i)[1].tolist())
            for i in range(links.n_queries)]


def _assert_same(fast, slow):
    assert fast.n_references == slow.n_references
    np.testing.assert_array_equal(fast.indptr, slow.indptr)
    np.testing.assert_array_equal(fast.indices, slow.indices)
    np.testing.assert_array_equal(fast.distances, slow.distances)


# --- input checking names the argument ------------------------------------------------------

SEARCHES = [radius.radius_links, radius.radius_links_latlon, radius.brute_force_links]


@pytest.mark.parametrize("fn", SEARCHES, ids=["planar", "latlon", "brute"])
def test_bad_point_arrays_name_the_argument(fn):
    with pytest.raises(UsageError, match=r"^queries must be an \(N, 2\) array of coordinates, "
                                         r"got shape \(3,\)$"):
        fn([1.0, 2.0, 3.0], [[0.0, 0.0]], 1.0)
    with pytest.raises(UsageError, match=r"^references must be an \(N, 2\) array of "
                                         r"coordinates, got shape \(1, 4\)$"):
        fn([[0.0, 0.0]], [[0.0, 0.0, 0.0, 0.0]], 1.0)
    # None (a missing CSV cell) becomes NaN and is reported, not a TypeError from numpy.
    with pytest.raises(UsageError, match=r"^queries has missing \(NaN\) or infinite "
                                         r"coordinates$"):
        fn([[0.0, None]], [[0.0, 0.0]], 1.0)
    with pytest.raises(UsageError, match=r"^references has missing"):
        fn([[0.0, 0.0]], [[np.inf, 0.0]], 1.0)


def test_numeric_text_coordinates_are_parsed():
    links = radius.radius_links([["0", "0"]], [["3", "4"], ["3", "4.1"]], 5.0)
    assert _as_lists(links) == [([0], [5.0])]


def test_three_coordinate_points_are_searched_in_3d():
    q = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    r = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, 3.0], [1.0, 2.0, 2.0], [5.0, 5.0, 5.0]])
    links = radius.radius_links(q, r, 3.0)
    assert _as_lists(links) == [([0, 1, 2], [2.0, 3.0, 3.0]), ([3], [0.0])]
    _assert_same(links, radius.brute_force_links(q, r, 3.0))


# --- results carry the reference count; defaults --------------------------------------------


def test_reference_count_is_kept_without_queries_or_links():
    refs = np.zeros((3, 2))
    for links in (radius.search(np.zeros((0, 2)), refs, 1.0),
                  radius.search(np.zeros((0, 2)), refs, 1.0, metric="latlon"),
                  radius.brute_force_links(np.ones((2, 2)) * 9, refs, 1.0)):
        assert links.n_references == 3
    empty = radius.search(np.zeros((0, 2)), refs, 1.0)
    assert empty.indptr.tolist() == [0] and empty.indices.size == 0


def test_search_is_planar_by_default():
    q, r = [[0.0, 0.0]], [[3.0, 4.0], [30.0, 40.0]]
    assert _as_lists(radius.search(q, r, 5.0)) == [([0], [5.0])]
    assert _as_lists(radius.brute_force_links(q, r, 5.0)) == [([0], [5.0])]


# --- row order: distance, then reference index, even where the fast key cannot tell ---------


def test_equal_distances_are_ordered_by_reference_index():
    # Reference 1 sits in an earlier grid cell than reference 0, so the candidates arrive
    # as (1, 0); both are 0.9 m away and the row must still read (0, 1).
    q = [[0.0, 0.0]]
    r = [[0.9, 0.0], [-0.9, 0.0]]
    assert _as_lists(radius.radius_links(q, r, 1.0)) == [([0, 1], [0.9, 0.9])]


def test_distances_below_the_sort_key_resolution_are_still_ordered():
    # A 1e12 m link makes the one-float key (query * scale + distance) resolve only ~5e-4 m
    # for query 1, so 1.0001 m and 1.0 m tie in the key; the row must still be by distance.
    q = [[0.0, 0.0], [0.0, 0.0]]
    r = [[0.0, 0.0], [1e12, 0.0], [1.0001, 0.0], [1.0, 0.0]]
    want = ([0, 3, 2, 1], [0.0, 1.0, 1.0001, 1e12])
    assert _as_lists(radius.radius_links(q, r, 2e12)) == [want, want]


# --- the grid never loses a pair at exactly the radius --------------------------------------

# Fractions f of a cell: a pair (y, y + chord) with y = chord * (1 - f) lands two cells apart
# when the cell is narrower than the chord by a fraction in [f/2, f); this ladder covers
# every shortfall from 1e-9 to 0.3 of a cell.
LADDER = 1e-9 * 1.5 ** np.arange(50)


def test_planar_pairs_at_exactly_the_radius_are_found():
    # x values on a 2^-40 grid, so x + 1 is exact and every pair is exactly 1.0 m apart.
    x = np.round((1.0 - LADDER) * 2.0**40) / 2.0**40
    y = 10.0 * np.arange(len(x))  # one row per pair, far from the others
    q = np.vstack([[0.0, 0.0], np.column_stack([x, y])])  # (0, 0) fixes the grid origin
    r = np.column_stack([x + 1.0, y])
    links = radius.radius_links(q, r, 1.0)
    _assert_same(links, radius.brute_force_links(q, r, 1.0))
    rows = _as_lists(links)
    assert rows[1:] == [([i], [1.0]) for i in range(len(x))]


@pytest.mark.parametrize("metres", [1e-3, 1000.0])
def test_great_circle_pairs_at_exactly_the_radius_are_found(metres):
    # On the equator near lon 0 the unit vectors' y is sin(lon): place pairs one chord apart
    # in y at every offset of the ladder, with a point at lon 0 fixing the grid origin.
    chord = 2.0 * np.sin(metres / EARTH_RADIUS_M / 2.0)
    lon_q = np.degrees(np.arcsin(chord * (1.0 - LADDER)))
    lon_r = np.degrees(np.arcsin(chord * (2.0 - LADDER)))
    q = np.column_stack([np.zeros(len(LADDER) + 1), np.r_[0.0, lon_q]])
    r = np.column_stack([np.zeros(len(LADDER)), lon_r])
    limit = float(haversine_m(0.0, lon_q, 0.0, lon_r).max())  # every pair is within it
    assert limit == pytest.approx(metres, rel=1e-6)
    links = radius.radius_links_latlon(q, r, limit)
    _assert_same(links, radius.brute_force_links(q, r, limit, metric="latlon"))
    for i in range(len(LADDER)):
        assert i in links.row(i + 1)[0].tolist()


def test_great_circle_search_is_warning_free():
    # Unit vectors built from both coordinates are finite; a NaN in them would warn when
    # cast to integer cells (and silently collapse the grid).
    q = [[10.0, 20.0], [-45.0, 179.995]]  # the second link crosses the antimeridian
    r = [[10.001, 20.0], [-45.0, -179.995], [60.0, 0.0]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        links = radius.radius_links_latlon(q, r, 1000.0)
    _assert_same(links, radius.brute_force_links(q, r, 1000.0, metric="latlon"))
    assert links.counts().tolist() == [1, 1]


def test_great_circle_radius_of_a_quarter_meridian():
    # 1e7 m is ~90 degrees of arc: the cell is the chord of that arc (~1.41), not its sine's.
    links = radius.radius_links_latlon([[0.0, 0.0]], [[0.0, 80.0], [0.0, 100.0], [-85.0, 0.0]],
                                       1e7)
    ids, dist = links.row(0)
    assert ids.tolist() == [0, 2]
    np.testing.assert_allclose(dist / (EARTH_RADIUS_M * np.pi / 180.0), [80.0, 85.0],
                               rtol=1e-12)


def test_great_circle_radius_of_another_sphere():
    # On the unit sphere distances are radians: 90 degrees of arc is pi/2 "metres".
    q, r = [[0.0, 0.0]], [[0.0, 90.0], [0.0, 180.0]]
    for links in (radius.radius_links_latlon(q, r, 2.0, radius_m=1.0),
                  radius.brute_force_links(q, r, 2.0, metric="latlon", radius_m=1.0)):
        ids, dist = links.row(0)
        assert ids.tolist() == [0]
        assert dist[0] == pytest.approx(np.pi / 2, rel=1e-14)


def test_great_circle_radius_zero_keeps_exact_duplicates():
    # Inclusive bound: distance 0 <= radius 0 is a link; a point 1 cm away is not.
    links = radius.radius_links_latlon([[10.0, 20.0]], [[10.0, 20.0000001], [10.0, 20.0]], 0.0)
    assert _as_lists(links) == [([1], [0.0])]


# --- dense areas are searched in smaller chunks with the same result ------------------------


def test_chunking_in_dense_areas_gives_the_same_links(monkeypatch):
    # A tiny candidate budget forces every branch of the chunk loop: halving down to single
    # queries that alone exceed the budget, and doubling again after cheap queries.
    monkeypatch.setattr(radius, "CANDIDATE_BUDGET", 8)
    refs = np.column_stack([0.01 * np.arange(20), np.zeros(20)])
    dense = np.column_stack([0.05 * np.arange(10), np.full(10, 0.02)])
    far = np.array([[1000.0, 1000.0], [-1000.0, 500.0], [2000.0, -700.0]])
    queries = np.vstack([far[:2], dense[:5], far[2:], dense[5:]])
    links = radius.radius_links(queries, refs, 1.0)
    _assert_same(links, radius.brute_force_links(queries, refs, 1.0))
    assert links.counts().tolist() == [0, 0] + [20] * 5 + [0] + [20] * 5
