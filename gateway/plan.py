"""From config + driver catalogues to the site plan: which Datastreams exist and how each is fed.

Pure. The privacy stage, the sinks, `check`, the privacy report and the catalogue export all read
the same plan, so what the report says is exactly what the gateway enforces. Pure modules
downstream (privacy, standards) take the plan, not the config.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel

from firmware_bridge import units
from firmware_bridge.base import Aggregation, Catalogue, Field
from firmware_bridge.driver import Driver, MessageDriver
from firmware_bridge.drivers import DRIVERS
from firmware_bridge.options import DriverOptions
from gateway.checks import publishable_site_keys
from gateway.config import Config, PrivacyZone, Problem, Sensor, problem_at
from gateway.model import Datastream, stable_id
from gateway.privacy.disclosure import (
    DEFAULT_POLICY,
    RESIDENTIAL_DELAY_S,
    RESIDENTIAL_WINDOW_S,
    is_evse_status,
    validate_aggregation,
    validate_rotation,
)
from gateway.privacy.estimators import ESTIMATORS
from gateway.privacy.location import LonLat, coarsen, in_zone, polygon, snap_to_grid
from gateway.privacy.sketch import DEFAULT_CAP
from gateway.sources import SOURCES

Loc = tuple[str | int, ...]
WITHHELD_GRID_M = 1000.0  # a privacy zone withholds the site: entities show its square km only


@dataclass(frozen=True)
class SensorPlan:
    sensor: Sensor
    driver: Driver
    options: DriverOptions  # validated: the driver's own Options model
    transport: str  # the source it arrives through: serial, mqtt, …
    section: BaseModel  # the sensor's settings for that source
    catalogue: Catalogue
    published: tuple[Field, ...]  # non-personal per-reading fields that leave
    aggregates: tuple[Field, ...]  # windowed aggregates that leave
    withheld: tuple[Field, ...]  # personal or not selected: never leave
    datastreams: dict[str, Datastream]  # property -> Datastream (published + aggregates)
    window_s: float
    min_count: int
    delay_s: float
    suppressed: bool = False  # inside a `suppress` privacy zone: nothing leaves
    zones: tuple[str, ...] = ()  # names of the privacy zones that apply
    estimators: tuple[tuple[str, Any], ...] = ()  # (aggregate key, the estimator's settings)
    disclosure: str = DEFAULT_POLICY.value  # policy for aggregates of personal fields
    distinct_cap: int = DEFAULT_CAP  # exact pseudonyms per open set, then a sketch
    residential: bool = False  # a home's EV bay: coarse status, per hour, an hour late

    @property
    def id(self) -> str:
        return self.sensor.id

    def estimator_options(self, key: str) -> Any:
        return dict(self.estimators).get(key)


@dataclass(frozen=True)
class Site:
    """What the published metadata says about the site (never the exact position)."""

    gateway_id: str
    borough: str
    name: str
    description: str
    usrn: str | None = None  # address-level: set only when the config opts in to publishing it
    uprn: str | None = None


@dataclass(frozen=True)
class SitePlan:
    gateway_id: str
    thing_id: int
    sensors: dict[str, SensorPlan]
    location: LonLat | None = None  # published (coarsened) site position; None: withheld
    location_grid_m: float = 0.0  # grid (or bin along the street segment) actually applied
    site: Site | None = None
    shown_location: LonLat | None = None  # what entities show: `location`, or its 1 km square
    shown_grid_m: float = 0.0  # the grid `shown_location` is snapped to (1 km when withheld)

    @property
    def datastreams(self) -> dict[int, Datastream]:
        return {ds.id: ds for sp in self.sensors.values() for ds in sp.datastreams.values()}

    @property
    def vocabularies(self) -> dict[int, tuple[str, frozenset[str]]]:
        """Datastream id -> (sensor, the words a text result may be), for the egress guard. A
        Datastream whose field declares no vocabulary gets none: no text leaves on it (default
        deny for free text; docs/privacy.md)."""
        out: dict[int, tuple[str, frozenset[str]]] = {}
        for sp in self.sensors.values():
            for f in (*sp.published, *sp.aggregates):
                ds = sp.datastreams.get(f.key)
                if ds is not None:
                    out[ds.id] = (sp.id, f.vocabulary or frozenset())
        return out


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
        sp = _sensor_plan(cfg, ("sensors", i), s, problems)
        if sp is not None:
            sp = _apply_zones(sp, [z for z in zones if z.sensors is None or s.id in z.sensors])
            sp = _apply_residential(sp)
            _check_keys(cfg, ("sensors", i), sp, problems)
            sensors[s.id] = sp
    index = {s.id: i for i, s in enumerate(cfg.sensors)}
    for name in SOURCES:  # the names; only the sources that sensors use are imported
        plans = [sp for sp in sensors.values() if sp.transport == name]
        for sid, loc, msg in SOURCES[name].conflicts(plans) if plans else ():
            problems.append(problem_at(cfg, ("sensors", index[sid], *loc), msg))
    if problems:
        raise PlanError(problems)
    location, grid = _site_location(cfg, zones, problems)
    if problems:
        raise PlanError(problems)
    g = cfg.gateway
    address = publishable_site_keys({"usrn": g.usrn, "uprn": g.uprn}, g.publish_address_keys)
    site = Site(g.id, g.borough, g.name or g.id,
                g.description or f"Street sensor gateway {g.id} ({g.borough})",
                address.get("usrn"), address.get("uprn"))  # fmt: skip
    if location is not None:
        shown, shown_grid = location, grid
    else:
        shown_grid = max(WITHHELD_GRID_M, grid)
        shown = snap_to_grid(g.location.lon, g.location.lat, shown_grid)
    return SitePlan(g.id, stable_id("thing", g.id), sensors, location, grid, site, shown, shown_grid)


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


def _apply_residential(sp: SensorPlan) -> SensorPlan:
    """A home's EV bay (`privacy.residential`): its status says when the household is in.
    Per-reading fields leave only as the last value per hour, an hour late; by default only the
    EVSE status (coarsened by the stage: occupancy states become UNKNOWN); other fields only if
    `publish` lists them."""
    if not sp.residential or sp.suppressed:
        return sp
    keep = sp.published
    if sp.sensor.privacy.publish is None:
        keep = tuple(f for f in sp.published if is_evse_status(f.vocabulary))
    datastreams = {k: ds for k, ds in sp.datastreams.items()
                   if k not in {f.key for f in sp.published} or k in {f.key for f in keep}}  # fmt: skip
    lasts = tuple(replace(f, aggregation=Aggregation.LAST, source=f.key) for f in keep)
    for f in lasts:
        datastreams[f.key] = replace(datastreams[f.key], aggregation=Aggregation.LAST.value)
    dropped = tuple(f for f in sp.published if f not in keep)
    return replace(sp, published=(), aggregates=(*sp.aggregates, *lasts), datastreams=datastreams,
                   withheld=(*sp.withheld, *dropped), window_s=max(sp.window_s, RESIDENTIAL_WINDOW_S),
                   delay_s=max(sp.delay_s, RESIDENTIAL_DELAY_S))  # fmt: skip


def personal_aggregates(sp: SensorPlan) -> tuple[Field, ...]:
    """The aggregates that are derived from personal-at-source data (disclosure control)."""
    out = []
    for f in sp.aggregates:
        source = sp.catalogue.field(f.source) if f.source is not None else None
        if f.estimator is not None or (source is not None and source.personal):
            out.append(f)
    return tuple(out)


def _check_keys(cfg: Config, loc: Loc, sp: SensorPlan, problems: list[Problem]) -> None:
    """Windows of personal data each need one key epoch: the rotation a whole multiple of the
    window, and the publication delay shorter than the rotation (the key lives that long)."""
    if not personal_aggregates(sp):
        return
    rotation = cfg.privacy.salt_rotation
    for message in validate_rotation(rotation, [sp.window_s]):
        problems.append(problem_at(cfg, ("privacy", "salt_rotation"), f"sensor {sp.id}: {message}"))
    if sp.delay_s >= rotation:
        where = (*loc, "privacy", "delay") if sp.sensor.privacy.delay is not None else ("privacy", "salt_rotation")
        problems.append(problem_at(cfg, where, f"sensor {sp.id}: a delay of {sp.delay_s:g}s is not shorter "
                                   f"than the key rotation ({rotation:g}s): the key would outlive its epoch"))  # fmt: skip


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


def _transport(cfg: Config, loc: Loc, s: Sensor, problems: list[Problem]) -> tuple[str, BaseModel] | None:
    """The source this sensor arrives through, with what that source needs from the config."""
    name, section = s.transport
    spec = SOURCES[name]
    if spec.inputs_required and cfg.input(name) is None:
        problems.append(problem_at(cfg, (*loc, name), f"{name} sensors need `inputs: {{{name}: …}}`"))
        return None
    topic = getattr(section, "topic", "")
    driver = DRIVERS[s.driver]
    if topic is None and isinstance(driver, MessageDriver) and driver.topic(s.options) is None:
        problems.append(problem_at(cfg, (*loc, name, "topic"), f"{s.driver} has no default topic: give one, or the option it derives one from ({driver.doc})"))
        return None
    return name, section


def _select(cfg: Config, loc: Loc, s: Sensor, cat: Catalogue, problems: list[Problem]) -> tuple[list[Field], list[Field]]:
    """(per-reading fields, aggregates) that leave: the catalogue's, narrowed by privacy.publish."""
    public = [f for f in cat.fields if not f.personal and not f.derived]
    aggregates = [f for f in cat.fields if f.derived]
    if s.privacy.publish is None:
        return public, aggregates
    selectable = {f.key for f in (*public, *aggregates)}
    for j, key in enumerate(s.privacy.publish):
        if key not in selectable:
            why = "is personal and never leaves" if cat.field(key) is not None else "is not a property of this driver"
            problems.append(problem_at(cfg, (*loc, "privacy", "publish", j), f"{key!r} {why}; publishable: {', '.join(sorted(selectable))}"))  # fmt: skip
    chosen = set(s.privacy.publish)
    return [f for f in public if f.key in chosen], [f for f in aggregates if f.key in chosen]


def _datastreams(cfg: Config, loc: Loc, s: Sensor, fields: list[Field], problems: list[Problem]) -> dict[str, Datastream]:
    out: dict[str, Datastream] = {}
    for f in fields:
        if f.unit is not None and (why := units.problem(f.unit)):
            problems.append(problem_at(cfg, (*loc, "driver"), f"{s.driver} declares an invalid unit for {f.key}: {why}"))  # fmt: skip
        out[f.key] = Datastream.build(cfg.gateway.id, s.id, f.key, f.unit, f.observation_type,
                                      f.description, f.aggregation.value)  # fmt: skip
    return out


def _where_declared(s: Sensor, key: str) -> Loc:
    """Where in the sensor's options an aggregate `key` is declared (a mapping entry with
    `property: key`), e.g. ("options", "aggregates", 0, "aggregation"); the driver if the
    driver's own catalogue declares it."""

    def walk(value: Any, at: Loc) -> Loc | None:
        if isinstance(value, dict):
            if value.get("property") == key and "aggregation" in value:
                return (*at, "aggregation")
            for k, v in value.items():
                found = walk(v, (*at, k))
                if found:
                    return found
        elif isinstance(value, list):
            for i, v in enumerate(value):
                found = walk(v, (*at, i))
                if found:
                    return found
        return None

    return walk(s.options.model_dump(), ("options",)) or ("driver",)


def _check_aggregates(cfg: Config, loc: Loc, s: Sensor, cat: Catalogue, aggregates: list[Field],
                      problems: list[Problem]) -> None:  # fmt: skip
    """An aggregate of a personal field must not publish one person's value (last, max, …)."""
    for f in aggregates:
        source = cat.field(f.source) if f.source is not None else None
        if source is None or not source.personal or f.estimator is not None:
            continue
        if problem := validate_aggregation(source.role.value, f.aggregation.value):
            problems.append(problem_at(cfg, (*loc, *_where_declared(s, f.key)), f"{f.key}: {problem}"))


def _estimators(cfg: Config, loc: Loc, s: Sensor, aggregates: list[Field], problems: list[Problem]) -> tuple[tuple[str, Any], ...]:
    out: list[tuple[str, Any]] = []
    for f in aggregates:
        if f.estimator is None:
            continue
        spec = ESTIMATORS.get(f.estimator)
        if spec is None:
            problems.append(problem_at(cfg, (*loc, "driver"), f"{s.driver} names an unknown estimator {f.estimator!r} for {f.key}"))  # fmt: skip
            continue
        try:
            out.append((f.key, spec.configure(cfg.privacy.footfall.model_dump(), s.options)))
        except ValueError as e:
            problems.append(problem_at(cfg, (*loc, "options"), str(e)))
    return tuple(out)


def _sensor_plan(cfg: Config, loc: Loc, s: Sensor, problems: list[Problem]) -> SensorPlan | None:
    driver = DRIVERS[s.driver]  # the config's discriminated union already refused unknown ones
    transport = _transport(cfg, loc, s, problems)
    if transport is None:
        return None
    catalogue = driver.catalogue_for(s.options)
    public, aggregates = _select(cfg, loc, s, catalogue, problems)
    _check_aggregates(cfg, loc, s, catalogue, aggregates, problems)
    leaving = {f.key for f in (*public, *aggregates)}
    return SensorPlan(
        sensor=s,
        driver=driver,
        options=s.options,
        transport=transport[0],
        section=transport[1],
        catalogue=catalogue,
        published=tuple(public),
        aggregates=tuple(aggregates),
        withheld=tuple(f for f in catalogue.fields if f.key not in leaving),
        datastreams=_datastreams(cfg, loc, s, [*public, *aggregates], problems),
        window_s=s.privacy.window if s.privacy.window is not None else cfg.privacy.window,
        min_count=s.privacy.min_count if s.privacy.min_count is not None else cfg.privacy.min_count,
        delay_s=s.privacy.delay or 0.0,
        estimators=_estimators(cfg, loc, s, aggregates, problems),
        disclosure=s.privacy.disclosure or cfg.privacy.disclosure,
        distinct_cap=cfg.privacy.distinct_cap,
        residential=s.privacy.residential,
    )
