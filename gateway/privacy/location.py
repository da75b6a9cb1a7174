"""Location coarsening and privacy zones: what position of a site may be published.

Pure. Positions are (lon, lat) in WGS 84 degrees, the GeoJSON order. Distances use a local
equirectangular projection (metres east/north of a reference point), exact enough over the
few hundred metres a street sensor's grid or segment spans, and dependency-free.

Grid: the published point is the centre of the `grid_m` cell the site falls in, so every site in
the same cell publishes the same point (at most grid_m·√2/2 from the truth). Street segment: the
site is projected onto the configured LineString and published either at the segment's midpoint
or at the centre of its `grid_m` bin along the line — it then reads "somewhere on this stretch of
street", never "at this door".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # shapely (and numpy) load only when zones or a street segment are used:
    from shapely.geometry import Polygon  # ~20 MB of RSS a plain gateway does not need

LonLat = tuple[float, float]  # GeoJSON order

# Mean Earth radius (IUGG), metres: one degree of latitude is about 111 195 m on this sphere.
EARTH_RADIUS_M = 6_371_008.8
M_PER_DEG_LAT = math.pi * EARTH_RADIUS_M / 180.0
DECIMALS = 6  # about 0.1 m: far below any grid worth using, and keeps the JSON short


def _m_per_deg_lon(lat: float) -> float:
    return M_PER_DEG_LAT * math.cos(math.radians(lat))


def snap_to_grid(lon: float, lat: float, grid_m: float) -> LonLat:
    """The centre of the `grid_m`-metre cell that holds (lon, lat); `grid_m <= 0` rounds only.

    Snapping to a fixed grid, rather than adding noise, gives the same published point at every
    restart, so ids and retained metadata stay stable. Latitude snaps first; longitude then snaps
    on a grid scaled by the cosine of the *snapped* latitude, so every point of one latitude row
    shares the same cells. The point moves by at most half the cell diagonal (~0.71 × grid_m).
    """
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise ValueError("latitude and longitude must be finite")
    if grid_m <= 0:
        return round(lon, DECIMALS), round(lat, DECIMALS)
    dlat = grid_m / M_PER_DEG_LAT
    slat = (math.floor(lat / dlat) + 0.5) * dlat
    slat = max(-90.0, min(90.0, slat))
    cos_lat = math.cos(math.radians(slat))
    if cos_lat < 1e-9:  # at a pole every longitude is the same point
        return 0.0, round(slat, DECIMALS)
    dlon = grid_m / (M_PER_DEG_LAT * cos_lat)
    slon = (math.floor(lon / dlon) + 0.5) * dlon
    slon = ((slon + 180.0) % 360.0) - 180.0
    return round(slon, DECIMALS), round(slat, DECIMALS)


@dataclass(frozen=True)
class _Local:
    """A local metric frame around an origin: x metres east, y metres north."""

    lon0: float
    lat0: float

    def to_xy(self, p: LonLat) -> tuple[float, float]:
        return ((p[0] - self.lon0) * _m_per_deg_lon(self.lat0), (p[1] - self.lat0) * M_PER_DEG_LAT)

    def to_lonlat(self, x: float, y: float) -> LonLat:
        return (self.lon0 + x / _m_per_deg_lon(self.lat0), self.lat0 + y / M_PER_DEG_LAT)


def snap_to_segment(
    lon: float, lat: float, segment: Sequence[LonLat], grid_m: float, *, midpoint: bool = False
) -> LonLat:
    """Project the site onto the street `segment` and publish a coarse point on it.

    `midpoint`, or a grid at least as long as the segment, gives the segment's midpoint;
    otherwise the centre of the `grid_m` bin along the line (counted from its first vertex).
    grid_m <= 0 gives the exact projection onto the line.
    """
    if len(segment) < 2:
        raise ValueError("a street segment needs at least two points")
    frame = _Local(segment[0][0], segment[0][1])
    from shapely.geometry import LineString, Point

    line = LineString([frame.to_xy(p) for p in segment])
    length = float(line.length)
    if length == 0:
        raise ValueError("the street segment has zero length")
    if midpoint or grid_m >= length:
        d = length / 2
    else:
        d = float(line.project(Point(frame.to_xy((lon, lat)))))
        if grid_m > 0:
            d = min(length, (math.floor(d / grid_m) + 0.5) * grid_m)
    q = line.interpolate(d)
    out = frame.to_lonlat(float(q.x), float(q.y))
    return (round(out[0], DECIMALS), round(out[1], DECIMALS))


def coarsen(
    lon: float,
    lat: float,
    grid_m: float,
    segment: Sequence[LonLat] | None = None,
    *,
    midpoint: bool = False,
) -> LonLat:
    """The published position of a site: on its street segment if one is configured, else on
    the grid."""
    if segment:
        return snap_to_segment(lon, lat, segment, grid_m, midpoint=midpoint)
    return snap_to_grid(lon, lat, grid_m)


def polygon(ring: Sequence[LonLat]) -> Polygon:
    """A zone polygon from [[lon, lat], ...]; raises ValueError if it is not a valid area."""
    if len(ring) < 3:
        raise ValueError("a zone polygon needs at least three points")
    from shapely.geometry import Polygon

    poly = Polygon([(float(x), float(y)) for x, y in ring])
    if not poly.is_valid or poly.area == 0:
        raise ValueError("the zone polygon is not a simple area (edges cross or it has no area)")
    return poly


def in_zone(lon: float, lat: float, ring: Sequence[LonLat]) -> bool:
    """Inside or on the edge of the zone: a site on the boundary is treated as inside."""
    from shapely.geometry import Point

    return bool(polygon(ring).covers(Point(lon, lat)))


def distance_m(a: LonLat, b: LonLat) -> float:
    """Great-circle (haversine) distance in metres, for tests and the report."""
    p1, p2 = math.radians(a[1]), math.radians(b[1])
    dp, dl = p2 - p1, math.radians(b[0] - a[0])
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
