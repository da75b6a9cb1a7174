"""From config + driver catalogues to the site plan: which Datastreams exist and how each is fed.

Pure. The privacy stage, the sinks, `check`, the privacy report and the catalogue export all read
the same plan, so what the report says is exactly what the gateway enforces.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from firmware_bridge.base import Aggregation, Catalogue, Field
from firmware_bridge.driver import MqttDriver, SerialDriver
from firmware_bridge.drivers import MQTT_DRIVERS, SERIAL_DRIVERS
from gateway.config import Config, PrivacyZone, Problem, Sensor, problem_at
from gateway.model import Datastream, stable_id
from gateway.privacy.footfall import OPTION_KEYS as FOOTFALL_KEYS
from gateway.privacy.footfall import FootfallOptions
from gateway.privacy.location import LonLat, coarsen, in_zone, polygon
from gateway.standards.units import UNITS


@dataclass(frozen=True)
class SensorPlan:
    sensor: Sensor
    catalogue: Catalogue
    serial: SerialDriver | None
    mqtt: MqttDriver | None
    published: tuple[Field, ...]  # non-personal per-reading fields that leave
    aggregates: tuple[Field, ...]  # windowed aggregates that leave
    withheld: tuple[Field, ...]  # personal or not selected: never leave
    datastreams: dict[str, Datastream]  # property -> Datastream (published + aggregates)
    window_s: float
    min_count: int
    delay_s: float
    suppressed: bool = False  # inside a `suppress` privacy zone: nothing leaves
    zones: tuple[str, ...] = ()  # names of the privacy zones that apply
    footfall: FootfallOptions | None = None  # method for distinct counts of MACs

    @property
    def id(self) -> str:
        return self.sensor.id


@dataclass(frozen=True)
class SitePlan:
    gateway_id: str
    thing_id: int
    sensors: dict[str, SensorPlan]
    location: LonLat | None = None  # published (coarsened) site position; None: withheld
    location_grid_m: float = 0.0  # grid (or bin along the street segment) actually applied

    @property
    def datastreams(self) -> dict[int, Datastream]:
        return {ds.id: ds for sp in self.sensors.values() for ds in sp.datastreams.values()}


class PlanError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(map(str, problems)))


def build_plan(cfg: Config) -> SitePlan:
    """Resolve every sensor's driver and Datastreams; raise PlanError naming config lines."""
    problems: list[Problem] = []
    zones = _zones_here(cfg, problems)
    sensors: dict[str, SensorPlan] = {}
    for i, s in enumerate(cfg.sensors):
        sp = _sensor_plan(cfg, i, s, problems)
        if sp is not None:
            sensors[s.id] = _apply_zones(sp, [z for z in zones if z.sensors is None or s.id in z.sensors])
    if problems:
        raise PlanError(problems)
    location, grid = _site_location(cfg, zones, problems)
    if problems:
        raise PlanError(problems)
    return SitePlan(cfg.gateway.id, stable_id("thing", cfg.gateway.id), sensors, location, grid)


def _zones_here(cfg: Config, problems: list[Problem]) -> list[PrivacyZone]:
    """The privacy zones that contain the gateway (invalid polygons are config problems)."""
    here: list[PrivacyZone] = []
    ids = {s.id for s in cfg.sensors}
    site = (cfg.gateway.location.lon, cfg.gateway.location.lat)
    for j, z in enumerate(cfg.privacy.zones):
        try:
            polygon(z.polygon)
        except ValueError as e:
            problems.append(problem_at(cfg, ("privacy", "zones", j, "polygon"), str(e)))
            continue
        for k, sid in enumerate(z.sensors or ()):
            if sid not in ids:
                problems.append(problem_at(cfg, ("privacy", "zones", j, "sensors", k), f"no sensor with id {sid!r}"))  # fmt: skip
        if in_zone(*site, z.polygon):
            here.append(z)
    return here


def _apply_zones(sp: SensorPlan, zones: list[PrivacyZone]) -> SensorPlan:
    """Zones only ever make a sensor more private: the larger window, min_count, delay win."""
    if not zones:
        return sp
    names = tuple(z.name for z in zones)
    if any(z.action == "suppress" for z in zones):
        return replace(sp, published=(), aggregates=(), withheld=sp.catalogue.fields,
                       datastreams={}, suppressed=True, zones=names)  # fmt: skip
    window = max([sp.window_s, *(z.window for z in zones if z.window is not None)])
    min_count = max([sp.min_count, *(z.min_count for z in zones if z.min_count is not None)])
    delay = max([sp.delay_s, *(z.delay for z in zones if z.delay is not None)])
    published, aggregates, datastreams = sp.published, sp.aggregates, dict(sp.datastreams)
    if any(z.last_per_window for z in zones):
        lasts = tuple(replace(f, aggregation=Aggregation.LAST, source=f.key) for f in published)
        for f in lasts:
            old = datastreams[f.key]
            datastreams[f.key] = replace(old, aggregation=Aggregation.LAST.value)
        published, aggregates = (), (*aggregates, *lasts)
    return replace(sp, published=published, aggregates=aggregates, datastreams=datastreams,
                   window_s=window, min_count=min_count, delay_s=delay, zones=names)  # fmt: skip


def _site_location(cfg: Config, zones: list[PrivacyZone], problems: list[Problem]) -> tuple[LonLat | None, float]:
    """The site position as published: coarsened, coarser inside a zone, withheld if a
    site-wide `suppress` zone contains it."""
    if any(z.action == "suppress" and z.sensors is None for z in zones):
        return None, 0.0
    p = cfg.privacy
    grid = max([p.location_grid_m, *(z.grid_m for z in zones if z.grid_m is not None)])
    loc = cfg.gateway.location
    try:
        return coarsen(loc.lon, loc.lat, grid, p.street_segment,
                       midpoint=p.street_segment_publish == "midpoint"), grid  # fmt: skip
    except ValueError as e:
        problems.append(problem_at(cfg, ("privacy", "street_segment"), str(e)))
        return None, grid


def _sensor_plan(cfg: Config, i: int, s: Sensor, problems: list[Problem]) -> SensorPlan | None:
    loc: tuple[str | int, ...] = ("sensors", i)
    serial = SERIAL_DRIVERS.get(s.driver)
    mqtt = MQTT_DRIVERS.get(s.driver)
    if serial is None and mqtt is None:
        known = ", ".join(sorted({*SERIAL_DRIVERS, *MQTT_DRIVERS}))
        problems.append(problem_at(cfg, (*loc, "driver"), f"unknown driver {s.driver!r}; known: {known}"))
        return None
    if serial is not None and s.serial is None:
        problems.append(problem_at(cfg, (*loc, "driver"), f"{s.driver} is a serial driver: give `serial: {{port: …}}`"))
        return None
    if mqtt is not None and s.mqtt is None:
        problems.append(problem_at(cfg, (*loc, "driver"), f"{s.driver} is an MQTT profile: give `mqtt: {{topic: …}}`"))
        return None
    if mqtt is not None and cfg.inputs.mqtt is None:
        problems.append(problem_at(cfg, (*loc, "mqtt"), "MQTT sensors need `inputs: {mqtt: {host: …}}`"))
        return None
    if serial is not None:
        unknown = sorted(set(s.options) - serial.option_keys)
        if unknown:
            problems.append(problem_at(cfg, (*loc, "options", unknown[0]),
                                       f"unknown option for {s.driver}; known: {', '.join(sorted(serial.option_keys)) or 'none'}"))  # fmt: skip
            return None
        catalogue = serial.catalogue
    else:
        assert mqtt is not None
        if mqtt.validate_options is not None:
            option_problems = mqtt.validate_options(s.options)
            for msg in option_problems:
                problems.append(problem_at(cfg, (*loc, "options"), msg))
            if option_problems:
                return None  # the catalogue would only repeat the same complaint
        try:
            catalogue = mqtt.catalogue_for(s.options)
        except (KeyError, TypeError, ValueError) as e:
            problems.append(problem_at(cfg, (*loc, "options"), f"invalid options: {e}"))
            return None
    public = [f for f in catalogue.fields if not f.personal and f.aggregation is Aggregation.NONE]
    aggregates = [f for f in catalogue.fields if f.aggregation is not Aggregation.NONE]
    selectable = {f.key for f in (*public, *aggregates)}
    if s.privacy.publish is not None:
        for j, key in enumerate(s.privacy.publish):
            if key not in selectable:
                personal = catalogue.field(key) is not None
                why = "is personal and never leaves" if personal else "is not a property of this driver"
                problems.append(problem_at(cfg, (*loc, "privacy", "publish", j), f"{key!r} {why}; publishable: {', '.join(sorted(selectable))}"))  # fmt: skip
        chosen = set(s.privacy.publish)
        public = [f for f in public if f.key in chosen]
        aggregates = [f for f in aggregates if f.key in chosen]
    leaving = {f.key for f in (*public, *aggregates)}
    withheld = tuple(f for f in catalogue.fields if f.key not in leaving)
    datastreams: dict[str, Datastream] = {}
    for f in (*public, *aggregates):
        if f.unit is not None and f.unit not in UNITS:
            problems.append(problem_at(cfg, (*loc, "driver"), f"driver declares unknown unit {f.unit!r} for {f.key}"))  # fmt: skip
        datastreams[f.key] = Datastream.build(
            cfg.gateway.id, s.id, f.key, f.unit, f.observation_type, f.description, f.aggregation.value
        )
    footfall: FootfallOptions | None = None
    if any(f.aggregation is Aggregation.DISTINCT_COUNT and f.source == "mac" for f in aggregates):
        base = FootfallOptions.from_mapping(cfg.privacy.footfall.model_dump())
        try:
            footfall = FootfallOptions.from_mapping({k: s.options[k] for k in FOOTFALL_KEYS if k in s.options}, base)  # fmt: skip
        except ValueError as e:
            problems.append(problem_at(cfg, (*loc, "options"), str(e)))
    return SensorPlan(
        sensor=s,
        catalogue=catalogue,
        serial=serial,
        mqtt=mqtt,
        published=tuple(public),
        aggregates=tuple(aggregates),
        withheld=withheld,
        datastreams=datastreams,
        window_s=s.privacy.window if s.privacy.window is not None else cfg.privacy.window,
        min_count=s.privacy.min_count if s.privacy.min_count is not None else cfg.privacy.min_count,
        delay_s=s.privacy.delay or 0.0,
        footfall=footfall,
    )
