"""Behaviours of geobench.geometry.gps that mutation testing (issue 18) found unchecked.

Each test pins one observable behaviour; the comments say which kind of mistake it catches.
Expected values are computed independently (closed forms, zone tables, exact inputs) or are
round trips whose tolerance sits well below what a broken iteration gives.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from geobench.errors import UsageError
from geobench.geometry import gps

# --- error messages name the offending value in plain Python form --------------------------


def test_out_of_range_latitude_message_names_the_value():
    # numpy 2 reprs scalars as np.float64(85.0); the message must show the plain number.
    with pytest.raises(UsageError, match=r"^latitude 85\.0 is outside the UTM range "
                                         r"\[-80\.0, 84\.0\]; use great-circle"):
        gps.zone_letter([10.0, 85.0])


def test_hemisphere_is_required_to_invert_utm():
    with pytest.raises(UsageError, match=r"^utm_to_latlon needs zone_letter or northern= to "
                                         r"know the hemisphere$"):
        gps.utm_to_latlon(500000.0, 0.0, 31)


def test_bad_zone_letter_message_names_the_letter():
    with pytest.raises(UsageError, match=r"^UTM zone letter 'I' is not one of "
                                         r"CDEFGHJKLMNPQRSTUVWX$"):
        gps.utm_to_latlon([500000.0, 500000.0], [0.0, 0.0], 31, ["N", "i"])


def test_bad_zone_number_message_names_the_first_bad_zone():
    # 60 and 1 are valid, 61 is the first bad one: an off-by-one in either bound names 60 or 1.
    with pytest.raises(UsageError, match=r"^UTM zone number 61 is not in 1\.\.60$"):
        gps.utm_to_latlon([500000.0] * 3, [0.0] * 3, [60, 1, 61], "N")


# --- scalar in, Python scalar out; any array argument gives arrays -------------------------


def test_scalar_inputs_give_python_scalars():
    assert type(gps.utm_zone(45.0, 7.0)) is int
    assert type(gps.zone_letter(45.0)) is str
    e, n, z, zl = gps.latlon_to_utm(45.0, 7.0)
    assert (type(e), type(n), type(z), type(zl)) == (float, float, int, str)
    lat, lon = gps.utm_to_latlon(e, n, z, zl)
    assert (type(lat), type(lon)) == (float, float)
    assert type(gps.haversine_m(0.0, 0.0, 1.0, 1.0)) is float
    assert [type(v) for v in gps.latlon_to_enu(45.001, 7.001, 45.0, 7.0)] == [float] * 3
    assert [type(v) for v in gps.enu_to_latlon(10.0, 20.0, 1.0, 45.0, 7.0)] == [float] * 3


def _one_array_at_a_time(fn, scalars, array_values):
    """Call fn with every argument in turn replaced by a length-2 array; check each element
    matches the all-scalar call, so no argument is left out of the scalar/array decision."""
    for i in range(len(scalars)):
        args = list(scalars)
        args[i] = np.array(array_values[i])
        out = fn(*args)
        out = out if isinstance(out, tuple) else (out,)
        for k in range(2):
            args_k = list(scalars)
            args_k[i] = array_values[i][k]
            ref = fn(*args_k)
            ref = ref if isinstance(ref, tuple) else (ref,)
            for o, r in zip(out, ref, strict=True):
                assert np.shape(o) == (2,), (fn.__name__, i)
                # Vector and scalar paths may round differently in the last bit.
                if isinstance(r, str):
                    assert o[k] == r, (fn.__name__, i, k)
                else:
                    assert o[k] == pytest.approx(r, rel=1e-13, abs=1e-9), (fn.__name__, i, k)


def test_any_array_argument_gives_arrays():
    _one_array_at_a_time(gps.utm_zone, [60.0, 5.0], [[60.0, 50.0], [5.0, 13.0]])
    _one_array_at_a_time(gps.latlon_to_utm, [45.0, 7.0], [[45.0, -45.0], [7.0, 8.0]])
    _one_array_at_a_time(lambda e, n, z: gps.utm_to_latlon(e, n, z, northern=True),
                         [400000.0, 5000000.0, 32],
                         [[400000.0, 600000.0], [5000000.0, 4000000.0], [32, 33]])
    _one_array_at_a_time(gps.haversine_m, [0.0, 0.0, 1.0, 1.0],
                         [[0.0, 2.0], [0.0, 3.0], [1.0, 4.0], [1.0, 5.0]])
    _one_array_at_a_time(lambda la, lo, h: gps.latlon_to_enu(la, lo, 45.0, 7.0, h),
                         [45.001, 7.001, 0.0], [[45.001, 45.002], [7.001, 7.003], [0.0, 9.0]])
    _one_array_at_a_time(lambda e, n, u: gps.enu_to_latlon(e, n, u, 45.0, 7.0),
                         [10.0, 20.0, 1.0], [[10.0, -5.0], [20.0, 3.0], [1.0, 2.0]])


# --- numeric text (e.g. straight from a CSV) is converted like numbers ----------------------


def _same(a, b):
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("fn, args", [
    (gps.wrap_lon, (190.0,)),
    (gps.utm_zone, (78.0, 9.5)),
    (gps.zone_letter, (45.0,)),
    (gps.central_meridian, (31,)),
    (gps.latlon_to_utm, (51.2, 7.5)),
    (gps.latlon_to_utm, (51.2, 7.5, 31)),
    (gps.utm_to_latlon, (395201.31, 5673135.24, 32, "U")),
    (gps.haversine_m, (48.85, 2.35, 51.5, -0.12)),
    (gps.latlon_to_unit, (30.0, 60.0)),
    (gps.geodetic_to_ecef, (30.0, 60.0, 100.0)),
    (gps.ecef_to_geodetic, (4e6, 3e6, 3.5e6)),
    (lambda e, n, u: gps.enu_to_latlon(e, n, u, 45.0, 7.0), (10.0, 20.0, 1.0)),
], ids=["wrap_lon", "utm_zone", "zone_letter", "central_meridian", "latlon_to_utm",
        "latlon_to_utm_forced", "utm_to_latlon", "haversine", "unit", "to_ecef", "from_ecef",
        "enu_to_latlon"])
def test_numeric_text_is_converted_like_numbers(fn, args):
    as_text = tuple(a if isinstance(a, str) else str(a) for a in args)
    _same(fn(*as_text), fn(*args))


def test_zone_letters_from_an_object_column_are_accepted():
    # pandas gives object arrays of str; lower case letters name the same band (C: south).
    letters = np.array(["n", "c"], dtype=object)
    lat, _ = gps.utm_to_latlon([500000.0, 500000.0], [1000.0, 9999000.0], 31, letters)
    assert lat[0] > 0.009 and lat[1] == pytest.approx(-lat[0], abs=1e-12)


# --- zones ----------------------------------------------------------------------------------


def test_latlon_to_utm_applies_the_norway_and_svalbard_zones():
    # Standard zones would be 31 (lon 5) and 32 (lon 9.5); the exceptions give 32 and 33.
    _, _, zones, _ = gps.latlon_to_utm([60.0, 78.0, 60.0], [5.0, 9.5, 2.0])
    assert zones.tolist() == [32, 33, 31]


def test_svalbard_exception_stops_at_84_north():
    # Beyond 84N is UPS territory: the number falls back to the standard zone (32 at 10E).
    assert gps.utm_zone(84.0, 10.0) == 33
    assert gps.utm_zone(84.5, 10.0) == 32


def test_central_meridians():
    np.testing.assert_array_equal(gps.central_meridian([1, 30, 31, 60]),
                                  [-177.0, -3.0, 3.0, 177.0])


# --- convergence of the two iterations ------------------------------------------------------


def test_utm_inverse_converges_to_machine_precision():
    # The forward series is accurate to nanometres; a slowed Newton step in the inverse
    # leaves ~1e-10 degree errors at high latitude, 1000x above this bound.
    lat = np.linspace(-80.0, 84.0, 1641)
    lon = np.linspace(-3.0, 9.0, 1641)
    e, n, z, zl = gps.latlon_to_utm(lat, lon)
    lat2, lon2 = gps.utm_to_latlon(e, n, z, zl)
    assert np.abs(lat2 - lat).max() < 1e-12
    assert np.abs(lon2 - lon).max() < 1e-12


def test_ecef_inverse_converges_near_the_surface():
    lat, h = np.meshgrid(np.linspace(-89.5, 89.5, 359), [-1e4, -100.0, 0.0, 100.0, 1e4, 1e5])
    lat2, lon2, h2 = gps.ecef_to_geodetic(*gps.geodetic_to_ecef(lat, 7.0, h))
    # A worse starting guess leaves 4e-13 degrees / 2e-8 m after the fixed 6 iterations.
    assert np.abs(lat2 - lat).max() < 1e-13
    assert np.abs(h2 - h).max() < 1e-8
    assert np.abs(lon2 - 7.0).max() < 1e-12


def test_ecef_inverse_on_the_equator_is_silent_and_float():
    # The z/sin(p) pole form is evaluated (and discarded) on the equator: no RuntimeWarning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lat, lon, h = gps.ecef_to_geodetic(np.array([gps.WGS84_A + 5.0, 0.0]),
                                           np.array([0.0, gps.WGS84_A]), np.zeros(2))
    np.testing.assert_allclose(lat, [0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(lon, [0.0, 90.0], atol=1e-12)
    np.testing.assert_allclose(h, [5.0, 0.0], atol=1e-9)
    assert h.dtype == np.float64


def test_ecef_height_next_to_the_pole():
    # |cos(lat)| < 1e-3 uses the z form of the height: h = z / sin(p) - nu (1 - e2).
    lat = np.array([89.99, -89.999, 90.0])
    h = np.array([100.0, -30.0, 2500.0])
    lat2, _, h2 = gps.ecef_to_geodetic(*gps.geodetic_to_ecef(lat, 10.0, h))
    np.testing.assert_allclose(h2, h, atol=1e-6)
    np.testing.assert_allclose(lat2, lat, atol=1e-12)


# --- defaults and shapes --------------------------------------------------------------------


def test_heights_default_to_the_ellipsoid():
    x, y, z = gps.geodetic_to_ecef(0.0, 0.0)
    assert (float(x), float(y), float(z)) == (gps.WGS84_A, 0.0, 0.0)
    # The origin itself, both heights defaulted, is (0, 0, 0) in its own tangent plane.
    e, n, u = gps.latlon_to_enu(45.0, 7.0, 45.0, 7.0)
    assert abs(e) < 1e-9 and abs(n) < 1e-9 and abs(u) < 1e-9
    assert gps.latlon_to_enu(45.0, 7.0, 45.0, 7.0, h=3.0)[2] == pytest.approx(3.0, abs=1e-9)
    assert gps.latlon_to_enu(45.0, 7.0, 45.0, 7.0, h0=3.0)[2] == pytest.approx(-3.0, abs=1e-9)
    lat, lon, h = gps.enu_to_latlon(0.0, 0.0, 0.0, 45.0, 7.0)
    assert lat == pytest.approx(45.0, abs=1e-12) and lon == pytest.approx(7.0, abs=1e-12)
    assert abs(h) < 1e-9


def test_unit_vectors_put_the_xyz_axis_last():
    assert gps.latlon_to_unit(0.0, 90.0).shape == (3,)
    np.testing.assert_allclose(gps.latlon_to_unit(0.0, 90.0), [0.0, 1.0, 0.0], atol=1e-16)
    lat = np.array([[0.0, 90.0, 0.0, -90.0], [45.0, 0.0, 0.0, 0.0]])
    lon = np.array([[0.0, 0.0, 180.0, 0.0], [0.0, -90.0, 90.0, 0.0]])
    u = gps.latlon_to_unit(lat, lon)
    assert u.shape == (2, 4, 3)
    np.testing.assert_allclose(u[0, 1], [0.0, 0.0, 1.0], atol=1e-16)
    np.testing.assert_allclose(u[1, 1], [0.0, -1.0, 0.0], atol=1e-16)
    np.testing.assert_allclose(u[1, 0], [np.sqrt(0.5), 0.0, np.sqrt(0.5)], atol=1e-16)
