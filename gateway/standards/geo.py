"""Coarsening of published locations: snap a point to a metric grid. Pure.

A site's exact position (a lamp column outside someone's door) can single out a household; the
open data only needs the street. Snapping to a fixed grid — rather than adding noise — gives the
same published point at every restart, so ids and retained metadata stay stable.
"""

from __future__ import annotations

import math

# Mean Earth radius (IUGG), metres: one degree of latitude is about 111 195 m on this sphere.
EARTH_RADIUS_M = 6_371_008.8
M_PER_DEG_LAT = math.pi * EARTH_RADIUS_M / 180.0
DECIMALS = 6  # about 0.1 m: far below any grid worth using, and keeps the JSON short


def snap_to_grid(lat: float, lon: float, grid_m: float) -> tuple[float, float]:
    """The centre of the `grid_m`-metre cell that holds (lat, lon); `grid_m <= 0` rounds only.

    Latitude snaps first; longitude then snaps on a grid scaled by the cosine of the *snapped*
    latitude, so every point of one latitude row shares the same cells. The point moves by at
    most half the cell diagonal (about 0.71 × grid_m).
    """
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise ValueError("latitude and longitude must be finite")
    if grid_m <= 0:
        return round(lat, DECIMALS), round(lon, DECIMALS)
    dlat = grid_m / M_PER_DEG_LAT
    slat = (math.floor(lat / dlat) + 0.5) * dlat
    slat = max(-90.0, min(90.0, slat))
    cos_lat = math.cos(math.radians(slat))
    if cos_lat < 1e-9:  # at a pole every longitude is the same point
        return round(slat, DECIMALS), 0.0
    dlon = grid_m / (M_PER_DEG_LAT * cos_lat)
    slon = (math.floor(lon / dlon) + 0.5) * dlon
    slon = ((slon + 180.0) % 360.0) - 180.0
    return round(slat, DECIMALS), round(slon, DECIMALS)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres; used to check how far snapping moved a point."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
