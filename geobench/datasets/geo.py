"""GPS helpers the adapters need: UTM conversion, haversine, radius positives.

Adapters call only these functions, so the implementations behind them
(geobench.geometry.gps, and a radius search) can be swapped in one place.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def latlon_to_utm(lat: Any, lon: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(easting, northing, zone number) of WGS84 points, each in its own standard zone."""
    from geobench.geometry.gps import latlon_to_utm as convert

    east, north, zone, _ = convert(np.asarray(lat, dtype=float), np.asarray(lon, dtype=float))
    return np.asarray(east, float), np.asarray(north, float), np.asarray(zone)


def utm_to_latlon(east: Any, north: Any, zone: int, northern: bool) -> tuple[np.ndarray, np.ndarray]:
    from geobench.geometry.gps import utm_to_latlon as convert

    lat, lon = convert(np.asarray(east, float), np.asarray(north, float), zone, northern=northern)
    return np.asarray(lat, float), np.asarray(lon, float)


def haversine_m(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    from geobench.geometry.gps import haversine_m as distance

    return distance(lat1, lon1, lat2, lon2)


def radius_pairs(query_xy: np.ndarray, ref_xy: np.ndarray, radius: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (query row, reference row, distance) with Euclidean distance <= radius,
    ordered by query then reference row."""
    from scipy.spatial import cKDTree

    query_xy = np.asarray(query_xy, dtype=float).reshape(-1, 2)
    ref_xy = np.asarray(ref_xy, dtype=float).reshape(-1, 2)
    if not len(query_xy) or not len(ref_xy):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    hits = cKDTree(ref_xy).query_ball_point(query_xy, r=radius)
    qi = np.repeat(np.arange(len(query_xy)), [len(h) for h in hits]).astype(np.int64)
    ri = np.fromiter((j for h in hits for j in sorted(h)), dtype=np.int64, count=len(qi))
    dist = np.linalg.norm(query_xy[qi] - ref_xy[ri], axis=1) if len(qi) else np.zeros(0)
    return qi, ri, dist
