from __future__ import annotations

import numpy as np
import pytest

from geobench.errors import UsageError
from geobench.geometry import gps


@pytest.mark.parametrize("name, lat, lon, east, north, zone, letter, tol", [
    # Real gmberton-format file names (reference/datasets.md §5.2): lat/lon are printed
    # with 5 decimals, so they pin the UTM values to about a metre.
    ("sf-xl", 37.74472, -122.50057, 544000.32, 4177609.18, 10, "S", 1.2),
    ("sf-xl readme", 37.70098, -122.49646, 544388.51, 4172758.25, 10, "S", 1.2),
    ("tokyo", 35.65375, 139.69540, 381904.46, 3946329.36, 54, "S", 1.2),
    # utm.from_latlon(51.2, 7.5) (its README), which uses a lower-order series: 1 mm.
    ("utm readme", 51.2, 7.5, 395201.3103811303, 5673135.241182375, 32, "U", 1e-3),
])
def test_latlon_to_utm_known_points(name, lat, lon, east, north, zone, letter, tol):
    e, n, z, zl = gps.latlon_to_utm(lat, lon)
    assert abs(e - east) < tol and abs(n - north) < tol
    assert (z, zl) == (zone, letter)
    assert isinstance(z, int) and isinstance(zl, str)


def test_utm_central_meridian_and_equator_are_exact():
    e, n, z, zl = gps.latlon_to_utm(0.0, 3.0)
    assert (e, n, z, zl) == (500000.0, 0.0, 31, "N")
    e, n, _, zl = gps.latlon_to_utm(-1e-9, 3.0)
    assert zl == "M" and n == pytest.approx(10000000.0, abs=1e-3)


def test_utm_round_trip_vectorised():
    rng = np.random.default_rng(0)
    lat = rng.uniform(-80, 84, 20000)
    lon = rng.uniform(-180, 180, 20000)
    e, n, z, zl = gps.latlon_to_utm(lat, lon)
    assert e.shape == n.shape == z.shape == zl.shape == (20000,)
    lat2, lon2 = gps.utm_to_latlon(e, n, z, zl)
    assert np.abs(lat2 - lat).max() < 1e-9
    assert np.abs((lon2 - lon + 180) % 360 - 180).max() < 1e-9
    lat3, _ = gps.utm_to_latlon(e, n, z, northern=lat >= 0)
    assert np.abs(lat3 - lat).max() < 1e-9


def test_utm_distances_match_great_circle_locally():
    lat0, lon0 = 40.4, -3.7
    e0, n0, z, _ = gps.latlon_to_utm(lat0, lon0)
    lat1, lon1, _ = gps.enu_to_latlon(300.0, 400.0, 0.0, lat0, lon0)
    e1, n1, _, _ = gps.latlon_to_utm(lat1, lon1, zone_number=z)
    # scale factor ~0.9997 near the zone edge; the plane distance is within 0.1%
    assert np.hypot(e1 - e0, n1 - n0) == pytest.approx(500.0, rel=1e-3)
    assert gps.haversine_m(lat0, lon0, lat1, lon1) == pytest.approx(500.0, rel=2e-3)


def test_zone_exceptions_and_forced_zone():
    assert gps.utm_zone(60.0, 5.0) == 32          # south-west Norway
    assert gps.utm_zone(78.0, 15.0) == 33         # Svalbard
    assert gps.utm_zone(0.0, 180.0) == 1          # 180 wraps to -180
    assert gps.utm_zone(0.0, 179.99) == 60
    e, _, z, _ = gps.latlon_to_utm(0.0, 6.5, zone_number=31)
    assert z == 31 and 880000 < e < 900000   # 3.5 deg east of zone 31's meridian
    assert gps.latlon_to_utm(0.0, 6.5)[2] == 32


def test_out_of_range_latitude_is_a_one_line_error():
    with pytest.raises(UsageError, match="outside the UTM range"):
        gps.latlon_to_utm(np.array([10.0, 85.0]), np.array([0.0, 0.0]))
    with pytest.raises(UsageError, match="zone letter"):
        gps.utm_to_latlon(500000.0, 0.0, 31, "I")


def test_haversine_across_antimeridian_and_broadcast():
    d = gps.haversine_m(0.0, 179.9999, 0.0, -179.9999)
    assert d == pytest.approx(2 * np.radians(1e-4) * gps.EARTH_RADIUS_M, rel=1e-9)
    lat = np.zeros(3)
    out = gps.haversine_m(lat, np.array([0.0, 1.0, 2.0]), 0.0, 0.0)
    assert out.shape == (3,) and out[0] == 0.0
    assert gps.haversine_m(0, 0, 0, 1, radius_m=6371004) == pytest.approx(
        np.radians(1) * 6371004)


def test_enu_round_trip_and_axes():
    lat0, lon0, h0 = 48.1, 11.5, 520.0
    e, n, u = gps.latlon_to_enu(48.1 + 0.001, 11.5, lat0, lon0, h=520.0, h0=h0)
    assert abs(e) < 1e-6 and 100 < n < 120 and abs(u) < 0.01   # north of origin
    e, n, u = gps.latlon_to_enu(48.1, 11.5 + 0.001, lat0, lon0, h=520.0, h0=h0)
    assert 70 < e < 80 and abs(n) < 0.01                        # east of origin
    rng = np.random.default_rng(1)
    east, north, up = rng.uniform(-5000, 5000, (3, 100))
    lat, lon, h = gps.enu_to_latlon(east, north, up, lat0, lon0, h0)
    e2, n2, u2 = gps.latlon_to_enu(lat, lon, lat0, lon0, h, h0)
    assert np.abs(np.stack([e2 - east, n2 - north, u2 - up])).max() < 1e-6



def test_haversine_uses_both_latitudes():
    # Independent value: the angle between the two unit vectors (arccos is precise at 1000 km).
    def unit(lat, lon):
        p, lam = np.radians(lat), np.radians(lon)
        return np.array([np.cos(p) * np.cos(lam), np.cos(p) * np.sin(lam), np.sin(p)])

    for a, b in (((10.0, 0.0), (20.0, 5.0)), ((-35.0, 150.0), (-30.0, 140.0)), ((60.0, 10.0), (61.0, 30.0))):
        want = gps.EARTH_RADIUS_M * np.arccos(np.clip(unit(*a) @ unit(*b), -1, 1))
        assert gps.haversine_m(*a, *b) == pytest.approx(want, rel=1e-9)
        assert gps.haversine_m(*b, *a) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("lat, lon, zone", [
    (56.0, 3.0, 32), (63.999, 3.0, 32), (63.999, 11.999, 32),   # inside the Norway exception
    (64.0, 3.0, 31), (64.0, 5.0, 31), (55.999, 3.0, 31),        # its latitude band is [56, 64)
    (60.0, 2.999, 31), (60.0, 12.0, 33),                          # its longitudes are [3, 12)
    (72.0, 8.0, 31), (71.999, 8.0, 32), (72.0, 9.0, 33), (72.0, 20.999, 33), (72.0, 21.0, 35),
    (84.0, 33.0, 37), (84.0, 41.999, 37), (84.0, 42.0, 38),
])
def test_utm_zone_exceptions_at_their_edges(lat, lon, zone):
    assert gps.utm_zone(lat, lon) == zone
