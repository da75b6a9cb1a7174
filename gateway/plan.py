"""From config + driver catalogues to the site plan: which Datastreams exist and how each is fed.

Pure. The privacy stage, the sinks, `check`, the privacy report and the catalogue export all read
the same plan, so what the report says is exactly what the gateway enforces.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.base import Aggregation, Catalogue, Field
from firmware_bridge.driver import MqttDriver, SerialDriver
from firmware_bridge.drivers import MQTT_DRIVERS, SERIAL_DRIVERS
from gateway.config import Config, Problem, Sensor, problem_at
from gateway.model import Datastream, stable_id
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

    @property
    def id(self) -> str:
        return self.sensor.id


@dataclass(frozen=True)
class SitePlan:
    gateway_id: str
    thing_id: int
    sensors: dict[str, SensorPlan]

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
    sensors: dict[str, SensorPlan] = {}
    for i, s in enumerate(cfg.sensors):
        sp = _sensor_plan(cfg, i, s, problems)
        if sp is not None:
            sensors[s.id] = sp
    if problems:
        raise PlanError(problems)
    return SitePlan(cfg.gateway.id, stable_id("thing", cfg.gateway.id), sensors)


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
            for msg in mqtt.validate_options(s.options):
                problems.append(problem_at(cfg, (*loc, "options"), msg))
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
    )
