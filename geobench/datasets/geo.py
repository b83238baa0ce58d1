"""GPS helpers the adapters need: UTM conversion, haversine, radius positives.

A thin layer over geobench.geometry.gps and geobench.mining (the exact radius search), in
the shapes the adapters use (plain arrays, one UTM zone per point); adapters import
these so the modules behind them load lazily.
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
    """All (query row, reference row, distance) with Euclidean distance <= radius, ordered
    by query, then distance. Delegates to the exact radius search of geobench.mining."""
    from geobench.mining import search

    query_xy = np.asarray(query_xy, dtype=float).reshape(-1, 2)
    ref_xy = np.asarray(ref_xy, dtype=float).reshape(-1, 2)
    links = search(query_xy, ref_xy, radius, metric="utm")
    qi, ri = links.pairs()
    return qi.astype(np.int64), ri.astype(np.int64), links.distances
