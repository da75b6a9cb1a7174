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

from gateway.standards import geo
from gateway.standards.geo import DECIMALS, M_PER_DEG_LAT

LonLat = tuple[float, float]  # GeoJSON order


def _m_per_deg_lon(lat: float) -> float:
    return M_PER_DEG_LAT * math.cos(math.radians(lat))


def snap_to_grid(lon: float, lat: float, grid_m: float) -> LonLat:
    """Centre of the `grid_m` cell holding (lon, lat), in (lon, lat) order.

    Delegates to `gateway.standards.geo.snap_to_grid`, the grid the SensorThings Location uses,
    so the privacy report and the published Thing agree to the last digit.
    """
    lat_c, lon_c = geo.snap_to_grid(lat, lon, grid_m)
    return (lon_c, lat_c)


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
    """Approximate ground distance in metres (for tests and the report)."""
    frame = _Local(a[0], a[1])
    x, y = frame.to_xy(b)
    return math.hypot(x, y)
