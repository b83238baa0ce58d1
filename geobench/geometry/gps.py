"""GPS math on WGS84: lat/lon <-> UTM, great-circle distance, local tangent plane (ENU).

Everything is vectorised over numpy arrays and broadcasts like numpy; scalar inputs give
scalar outputs. UTM uses Krüger's series to sixth order in the third flattening
(Karney 2011), which is accurate to well under a millimetre inside a zone, so eastings
and northings agree with `utm.from_latlon` (used to name VG dataset files) to the
printed centimetre. Angles are degrees throughout.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from geobench.errors import UsageError

WGS84_A = 6378137.0
WGS84_F = 1 / 298.257223563
WGS84_E2 = WGS84_F * (2 - WGS84_F)
# IUGG mean Earth radius; VIGOR's official metre error uses 6371004 (pass radius_m=).
EARTH_RADIUS_M = 6371008.8

UTM_K0 = 0.9996
UTM_FALSE_EASTING = 500000.0
UTM_FALSE_NORTHING_SOUTH = 10000000.0
ZONE_LETTERS = "CDEFGHJKLMNPQRSTUVWX"  # 8-degree latitude bands from -80; X spans 72..84

_N = WGS84_F / (2 - WGS84_F)
_E = np.sqrt(WGS84_E2)
_A_RECT = WGS84_A / (1 + _N) * (1 + _N**2 / 4 + _N**4 / 64 + _N**6 / 256)


def _series(c: list[list[float]]) -> np.ndarray:
    """Evaluate Krüger coefficients given as polynomials in n (powers 1..6)."""
    return np.array([sum(k * _N ** (p + 1) for p, k in enumerate(row)) for row in c])


_ALPHA = _series([
    [1 / 2, -2 / 3, 5 / 16, 41 / 180, -127 / 288, 7891 / 37800],
    [0, 13 / 48, -3 / 5, 557 / 1440, 281 / 630, -1983433 / 1935360],
    [0, 0, 61 / 240, -103 / 140, 15061 / 26880, 167603 / 181440],
    [0, 0, 0, 49561 / 161280, -179 / 168, 6601661 / 7257600],
    [0, 0, 0, 0, 34729 / 80640, -3418889 / 1995840],
    [0, 0, 0, 0, 0, 212378941 / 319334400],
])
_BETA = _series([
    [1 / 2, -2 / 3, 37 / 96, -1 / 360, -81 / 512, 96199 / 604800],
    [0, 1 / 48, 1 / 15, -437 / 1440, 46 / 105, -1118711 / 3870720],
    [0, 0, 17 / 480, -37 / 840, -209 / 4480, 5569 / 90720],
    [0, 0, 0, 4397 / 161280, -11 / 504, -830251 / 7257600],
    [0, 0, 0, 0, 4583 / 161280, -108847 / 3991680],
    [0, 0, 0, 0, 0, 20648693 / 638668800],
])


def _out(value: Any, scalar: bool) -> Any:
    if not scalar:
        return value
    value = np.asarray(value)
    return value.item() if value.dtype.kind != "U" else str(value)


def _is_scalar(*values: Any) -> bool:
    return all(np.ndim(v) == 0 for v in values)


def wrap_lon(lon: Any) -> np.ndarray:
    """Longitude wrapped to [-180, 180)."""
    return (np.asarray(lon, dtype=float) + 180.0) % 360.0 - 180.0


def _check_lat(lat: np.ndarray, lo: float, hi: float, what: str) -> None:
    bad = ~((lat >= lo) & (lat <= hi))
    if np.any(bad):
        value = lat[bad].flat[0].item()  # a Python float: numpy 2 reprs np.float64(85.0)
        raise UsageError(f"latitude {value!r} is outside {what} [{lo}, {hi}]; "
                         f"use great-circle (lat/lon) distances for such points")


def utm_zone(lat: Any, lon: Any) -> Any:
    """UTM zone number (1..60) including the Norway and Svalbard exceptions."""
    scalar = _is_scalar(lat, lon)
    lat, lon = np.broadcast_arrays(np.asarray(lat, dtype=float), wrap_lon(lon))
    zone = np.floor((lon + 180.0) / 6.0).astype(np.int64) + 1
    zone = np.where((lat >= 56) & (lat < 64) & (lon >= 3) & (lon < 12), 32, zone)
    svalbard = (lat >= 72) & (lat <= 84) & (lon >= 0) & (lon < 42)
    for lo, hi, z in ((0, 9, 31), (9, 21, 33), (21, 33, 35), (33, 42, 37)):
        zone = np.where(svalbard & (lon >= lo) & (lon < hi), z, zone)
    return _out(zone, scalar)


def zone_letter(lat: Any) -> Any:
    """UTM latitude band letter (C..X); latitudes must lie in [-80, 84]."""
    scalar = _is_scalar(lat)
    lat = np.asarray(lat, dtype=float)
    _check_lat(lat, -80.0, 84.0, "the UTM range")
    band = np.minimum(np.floor((lat + 80.0) / 8.0).astype(np.int64), len(ZONE_LETTERS) - 1)
    return _out(np.asarray(list(ZONE_LETTERS))[band], scalar)


def central_meridian(zone_number: Any) -> np.ndarray:
    return (np.asarray(zone_number, dtype=float) - 1) * 6.0 - 180.0 + 3.0


def latlon_to_utm(lat: Any, lon: Any, zone_number: Any = None) -> tuple[Any, Any, Any, Any]:
    """(easting, northing, zone_number, zone_letter) of WGS84 points.

    `zone_number` forces a zone (e.g. to put points straddling a boundary in one plane);
    by default each point gets its own standard zone.
    """
    scalar = _is_scalar(lat, lon)
    lat, lon = np.broadcast_arrays(np.asarray(lat, dtype=float), wrap_lon(lon))
    letters = zone_letter(lat)
    zones = utm_zone(lat, lon) if zone_number is None else np.broadcast_to(
        np.asarray(zone_number, dtype=np.int64), lat.shape)
    if np.any((np.asarray(zones) < 1) | (np.asarray(zones) > 60)):
        raise UsageError(f"UTM zone {zone_number!r} is not in 1..60")
    dlon = np.radians(wrap_lon(lon - central_meridian(zones)))
    phi = np.radians(lat)
    sin_phi = np.sin(phi)
    tau = np.sinh(np.arctanh(sin_phi) - _E * np.arctanh(_E * sin_phi))  # conformal latitude
    xi_p = np.arctan2(tau, np.cos(dlon))
    eta_p = np.arctanh(np.sin(dlon) / np.sqrt(1 + tau**2))
    xi, eta = xi_p.copy(), eta_p.copy()
    for j, a in enumerate(_ALPHA, start=1):
        xi += a * np.sin(2 * j * xi_p) * np.cosh(2 * j * eta_p)
        eta += a * np.cos(2 * j * xi_p) * np.sinh(2 * j * eta_p)
    easting = UTM_FALSE_EASTING + UTM_K0 * _A_RECT * eta
    northing = UTM_K0 * _A_RECT * xi + np.where(lat < 0, UTM_FALSE_NORTHING_SOUTH, 0.0)
    return (_out(easting, scalar), _out(northing, scalar), _out(np.asarray(zones), scalar),
            _out(letters, scalar))


def _northern(zone_letter_: Any, northern: Any, shape: tuple[int, ...]) -> np.ndarray:
    if northern is not None:
        return np.broadcast_to(np.asarray(northern, dtype=bool), shape)
    if zone_letter_ is None:
        raise UsageError("utm_to_latlon needs zone_letter or northern= to know the hemisphere")
    letters = np.char.upper(np.asarray(zone_letter_, dtype=str))
    valid = np.isin(letters, list(ZONE_LETTERS))
    if not np.all(valid):
        bad = str(letters[~valid].flat[0])  # 'I', not numpy 2's np.str_('I')
        raise UsageError(f"UTM zone letter {bad!r} is not one of {ZONE_LETTERS}")
    return np.broadcast_to(letters >= "N", shape)


def utm_to_latlon(easting: Any, northing: Any, zone_number: Any, zone_letter: Any = None,
                  northern: Any = None) -> tuple[Any, Any]:
    """(lat, lon) of UTM coordinates; the hemisphere comes from the letter or `northern`."""
    scalar = _is_scalar(easting, northing, zone_number)
    e, n, z = np.broadcast_arrays(np.asarray(easting, dtype=float),
                                  np.asarray(northing, dtype=float),
                                  np.asarray(zone_number, dtype=np.int64))
    if np.any((z < 1) | (z > 60)):
        raise UsageError(f"UTM zone number {z[(z < 1) | (z > 60)].flat[0]} is not in 1..60")
    north = _northern(zone_letter, northern, e.shape)
    xi = (n - np.where(north, 0.0, UTM_FALSE_NORTHING_SOUTH)) / (UTM_K0 * _A_RECT)
    eta = (e - UTM_FALSE_EASTING) / (UTM_K0 * _A_RECT)
    xi_p, eta_p = xi.copy(), eta.copy()
    for j, b in enumerate(_BETA, start=1):
        xi_p -= b * np.sin(2 * j * xi) * np.cosh(2 * j * eta)
        eta_p -= b * np.cos(2 * j * xi) * np.sinh(2 * j * eta)
    tau_p = np.sin(xi_p) / np.sqrt(np.sinh(eta_p) ** 2 + np.cos(xi_p) ** 2)
    dlon = np.arctan2(np.sinh(eta_p), np.cos(xi_p))
    tau = tau_p.copy()
    for _ in range(5):  # Newton on tau' = f(tau); converges to machine precision in 3-4
        sigma = np.sinh(_E * np.arctanh(_E * tau / np.sqrt(1 + tau**2)))
        tau_i = tau * np.sqrt(1 + sigma**2) - sigma * np.sqrt(1 + tau**2)
        tau += ((tau_p - tau_i) / np.sqrt(1 + tau_i**2)
                * (1 + (1 - WGS84_E2) * tau**2) / ((1 - WGS84_E2) * np.sqrt(1 + tau**2)))
    lat = np.degrees(np.arctan(tau))
    lon = wrap_lon(central_meridian(z) + np.degrees(dlon))
    return _out(lat, scalar), _out(lon, scalar)


def haversine_m(lat1: Any, lon1: Any, lat2: Any, lon2: Any,
                radius_m: float = EARTH_RADIUS_M) -> Any:
    """Great-circle distance in metres on a sphere of `radius_m` (broadcasts)."""
    scalar = _is_scalar(lat1, lon1, lat2, lon2)
    p1, p2 = np.radians(np.asarray(lat1, dtype=float)), np.radians(np.asarray(lat2, dtype=float))
    dphi = p2 - p1
    dlam = np.radians(np.asarray(lon2, dtype=float) - np.asarray(lon1, dtype=float))
    h = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlam / 2) ** 2
    d = 2 * radius_m * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    return _out(d, scalar)


def latlon_to_unit(lat: Any, lon: Any) -> np.ndarray:
    """Unit vectors (..., 3) on the sphere; chord length orders points like arc length."""
    p, lam = np.radians(np.asarray(lat, dtype=float)), np.radians(np.asarray(lon, dtype=float))
    cp = np.cos(p)
    return np.stack([cp * np.cos(lam), cp * np.sin(lam), np.sin(p)], axis=-1)


def geodetic_to_ecef(lat: Any, lon: Any, h: Any = 0.0) -> tuple[np.ndarray, ...]:
    """Earth-centred Earth-fixed (x, y, z) in metres."""
    p, lam = np.radians(np.asarray(lat, dtype=float)), np.radians(np.asarray(lon, dtype=float))
    h = np.asarray(h, dtype=float)
    nu = WGS84_A / np.sqrt(1 - WGS84_E2 * np.sin(p) ** 2)
    return ((nu + h) * np.cos(p) * np.cos(lam), (nu + h) * np.cos(p) * np.sin(lam),
            (nu * (1 - WGS84_E2) + h) * np.sin(p))


def ecef_to_geodetic(x: Any, y: Any, z: Any) -> tuple[np.ndarray, ...]:
    """(lat, lon, h) from ECEF metres (fixed-point iteration, sub-millimetre near the surface)."""
    x, y, z = (np.asarray(v, dtype=float) for v in (x, y, z))
    lon = np.degrees(np.arctan2(y, x))
    rho = np.hypot(x, y)
    p = np.arctan2(z, rho * (1 - WGS84_E2))
    for _ in range(6):
        nu = WGS84_A / np.sqrt(1 - WGS84_E2 * np.sin(p) ** 2)
        p = np.arctan2(z + WGS84_E2 * nu * np.sin(p), rho)
    nu = WGS84_A / np.sqrt(1 - WGS84_E2 * np.sin(p) ** 2)
    cos_p = np.cos(p)
    # Near the poles rho/cos is ill-conditioned; use the z form there (np.where evaluates
    # both forms: the z form divides by zero on the equator, where it is not used).
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(np.abs(cos_p) > 1e-3, rho / np.where(cos_p == 0, 1, cos_p) - nu,
                     z / np.sin(p) - nu * (1 - WGS84_E2))
    return np.degrees(p), lon, h


def _enu_rotation(lat0: float, lon0: float) -> np.ndarray:
    p, lam = np.radians(lat0), np.radians(lon0)
    sp, cp, sl, cl = np.sin(p), np.cos(p), np.sin(lam), np.cos(lam)
    return np.array([[-sl, cl, 0.0], [-sp * cl, -sp * sl, cp], [cp * cl, cp * sl, sp]])


def latlon_to_enu(lat: Any, lon: Any, lat0: float, lon0: float, h: Any = 0.0,
                  h0: float = 0.0) -> tuple[Any, Any, Any]:
    """East, north, up metres of points in the tangent plane at (lat0, lon0, h0)."""
    scalar = _is_scalar(lat, lon, h)
    x, y, z = geodetic_to_ecef(lat, lon, h)
    x0, y0, z0 = geodetic_to_ecef(lat0, lon0, h0)
    d = np.stack(np.broadcast_arrays(x - x0, y - y0, z - z0), axis=-1)
    enu = d @ _enu_rotation(lat0, lon0).T
    return tuple(_out(enu[..., k], scalar) for k in range(3))  # type: ignore[return-value]


def enu_to_latlon(east: Any, north: Any, up: Any, lat0: float, lon0: float,
                  h0: float = 0.0) -> tuple[Any, Any, Any]:
    """Inverse of `latlon_to_enu`: (lat, lon, h) of tangent-plane points."""
    scalar = _is_scalar(east, north, up)
    enu = np.stack(np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (east, north, up))),
                   axis=-1)
    d = enu @ _enu_rotation(lat0, lon0)
    x0, y0, z0 = geodetic_to_ecef(lat0, lon0, h0)
    lat, lon, h = ecef_to_geodetic(d[..., 0] + x0, d[..., 1] + y0, d[..., 2] + z0)
    return _out(lat, scalar), _out(lon, scalar), _out(h, scalar)

