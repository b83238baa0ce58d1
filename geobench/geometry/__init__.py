"""Geometry: GPS math (gps), polar transform (polar), panorama crops (crops, cropset),
exact radius search (radius). The image runner shared by polar and crops is imagerun.

Only numpy-level GPS helpers are re-exported here; OpenCV is imported inside functions.
"""
from __future__ import annotations

from geobench.geometry.gps import (
                                   enu_to_latlon,
                                   haversine_m,
                                   latlon_to_enu,
                                   latlon_to_utm,
                                   utm_to_latlon,
                                   utm_zone,
)

__all__ = ["enu_to_latlon", "haversine_m", "latlon_to_enu", "latlon_to_utm", "utm_to_latlon",
           "utm_zone"]
