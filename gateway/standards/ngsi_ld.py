"""NGSI-LD export (FIWARE Smart Data Models) of Observations. Pure.

Some city platforms (Orion-LD, Scorpio) take NGSI-LD rather than SensorThings; the `mqtt` and
`file` sinks offer it as `format: ngsi-ld`. Each sensor that fits a model is one entity:
AirQualityObserved for air sensors, CrowdFlowObserved for counts of people per window,
EVChargingStation for EVSE status. Every Observation time gives one snapshot of that entity (an
upsert for the consumer), so nothing is averaged or dropped on the way. The module reads only
Observations — already non-personal — and copies only the attributes listed here, so session,
transaction, idTag or state-of-charge data cannot appear even if a driver learned them. Every
term resolves in the @context the entity names (tests expand them with the published contexts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.model import Observation, iso

if TYPE_CHECKING:  # the plan imports the config, which imports the sinks, which import this
    from gateway.plan import SensorPlan, SitePlan

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.3.jsonld"
ENVIRONMENT_CONTEXT = "https://smart-data-models.github.io/dataModel.Environment/context.jsonld"
TRANSPORTATION_CONTEXT = "https://smart-data-models.github.io/dataModel.Transportation/context.jsonld"

# OCPI 2.2.1's EVSE status has no term in the Smart Data Models contexts: EVChargingStation
# entities name it in an inline context entry, to the IRI SensorThings uses for the same
# phenomenon (gateway.standards.sensorthings.OCPI_STATUS), placed before the core context.
OCPI_STATUS = "https://github.com/ocpi/ocpi/blob/2.2.1/mod_locations.asciidoc#mod_locations_status_enum"
EV_TERMS: dict[str, str] = {"ocpiStatus": OCPI_STATUS}

Entity = dict[str, object]


@dataclass(frozen=True, slots=True)
class Attr:
    name: str  # Smart Data Models attribute
    units: Mapping[str, tuple[str | None, float]]  # Datastream UCUM -> (UN/CEFACT code, factor)


Units = dict[str, tuple[str | None, float]]
_MASS: Units = {"ug/m3": ("GQ", 1.0), "mg/m3": ("GQ", 1000.0)}  # UN/CEFACT GQ: µg/m³
_FRACTION: Units = {"[ppm]": ("59", 1.0), "[ppb]": ("61", 1.0)}  # 59 ppm, 61 ppb

# gateway property -> AirQualityObserved attribute, for the units the property can arrive in;
# a Datastream in any other unit is left out rather than published under a wrong unitCode.
AIR: dict[str, Attr] = {
    "pm1_0": Attr("pm1", _MASS),
    "pm2_5": Attr("pm25", _MASS),
    "pm10": Attr("pm10", _MASS),
    "no2": Attr("no2", {**_MASS, **_FRACTION}),
    "co2": Attr("co2", _FRACTION),
    "temperature": Attr("temperature", {"Cel": ("CEL", 1.0)}),
    "humidity": Attr("relativeHumidity", {"%": ("C62", 0.01)}),  # SDM: a 0..1 fraction
}

# gateway property -> CrowdFlowObserved.peopleCount: counts of people (or of the devices that
# stand for them) per window only. A running total at an instant (a line counter's register)
# or people present now (an Axis `occupancy`; SDM's occupancy is a fraction of time) is not a
# peopleCount, so only Observations with an interval phenomenonTime map.
CROWD: dict[str, Attr] = {
    "footfall": Attr("peopleCount", {"{devices}": (None, 1.0), "{count}": (None, 1.0)}),
    "passages_human": Attr("peopleCount", {"{count}": (None, 1.0)}),
}

EV_STATUS_PROPERTIES = ("status", "connector_status")  # OCPI 2.2.1 EVSE status words

# OCPI 2.2.1 EVSE status -> EVChargingStation.status (one EVSE per configured sensor, so the
# station is "empty" when its EVSE is free and "full" when it is taken).
OCPI_TO_SDM: dict[str, str] = {
    "AVAILABLE": "empty",
    "CHARGING": "full",
    "RESERVED": "full",
    "BLOCKED": "full",
    "OUTOFORDER": "outOfService",
    "INOPERATIVE": "outOfService",
    "PLANNED": "outOfService",
    "REMOVED": "outOfService",
}


def entity_id(kind: str, gateway_id: str, sensor_id: str) -> str:
    return f"urn:ngsi-ld:{kind}:{gateway_id}-{sensor_id}"


def kind_of(sp: SensorPlan) -> str | None:
    """Which Smart Data Model fits this sensor, judged from what it publishes."""
    keys = set(sp.datastreams)
    if keys & set(EV_STATUS_PROPERTIES):
        return "EVChargingStation"
    if keys & set(CROWD):
        return "CrowdFlowObserved"
    if keys & {"pm1_0", "pm2_5", "pm10", "no2", "co2"}:
        return "AirQualityObserved"
    return None


def context(kind: str) -> list[object]:
    """The entity's @context: its Smart Data Models domain, then (for EV) the inline term,
    then the NGSI-LD core context, which comes last."""
    if kind == "AirQualityObserved":
        return [ENVIRONMENT_CONTEXT, CORE_CONTEXT]
    if kind == "EVChargingStation":
        return [TRANSPORTATION_CONTEXT, dict(EV_TERMS), CORE_CONTEXT]
    return [TRANSPORTATION_CONTEXT, CORE_CONTEXT]


def _prop(value: object, observed_at: float | None = None, unit_code: str | None = None) -> Entity:
    p: Entity = {"type": "Property", "value": value}
    if unit_code:
        p["unitCode"] = unit_code
    if observed_at is not None:
        p["observedAt"] = iso(observed_at)
    return p


def _time(t: float) -> Entity:
    return {"type": "Property", "value": {"@type": "DateTime", "@value": iso(t)}}


def _scaled(v: float | int, factor: float) -> float | int:
    return v if factor == 1.0 else float(f"{v * factor:.9g}")


def _location(plan: SitePlan) -> Entity:
    """The plan's published position: coarsened, privacy zones applied."""
    if plan.shown_location is None:
        raise AssertionError("plan.shown_location is not None")
    lon, lat = plan.shown_location
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def _numeric(o: Observation) -> float | int | None:
    r = o.result
    return r if isinstance(r, int | float) and not isinstance(r, bool) else None


def _attr(sp: SensorPlan, table: dict[str, Attr], o: Observation) -> tuple[str, float | int, str | None] | None:
    """(attribute, value in SDM's unit, unitCode) or None when the table has no mapping for
    this property in this Datastream's unit, or the result is not a number."""
    attr = table.get(o.property)
    ds = sp.datastreams.get(o.property)
    v = _numeric(o)
    if attr is None or ds is None or v is None or ds.unit not in attr.units:
        return None
    code, factor = attr.units[str(ds.unit)]
    return attr.name, _scaled(v, factor), code


def _air(sp: SensorPlan, group: list[Observation]) -> Entity | None:
    e: Entity = {}
    for o in group:
        mapped = _attr(sp, AIR, o)
        if mapped is not None:
            name, value, code = mapped
            e[name] = _prop(value, o.phenomenon_time, code)
    if not e:
        return None
    return {"dateObserved": _time(group[0].phenomenon_time), **e}


def _crowd(sp: SensorPlan, group: list[Observation]) -> Entity | None:
    o = next((o for o in group if o.property in CROWD and o.phenomenon_end is not None), None)
    if o is None or o.phenomenon_end is None:
        return None
    e: Entity = {
        "dateObserved": _time(o.phenomenon_end),
        "dateObservedFrom": _time(o.phenomenon_time),
        "dateObservedTo": _time(o.phenomenon_end),
    }
    mapped = _attr(sp, CROWD, o)
    if mapped is not None:  # a suppressed small count is left out, never sent as a number
        name, value, _ = mapped
        e[name] = _prop(value, o.phenomenon_end)
    return e


def _ev(group: list[Observation], socket_types: Sequence[str]) -> Entity | None:
    o = next((o for o in group if o.property in EV_STATUS_PROPERTIES and isinstance(o.result, str)), None)
    if o is None or not isinstance(o.result, str):
        return None
    ocpi = o.result.upper()
    e: Entity = {
        "capacity": _prop(1),
        "allowedVehicleType": _prop(["car"]),
        "socketType": _prop(list(socket_types)),
        "ocpiStatus": _prop(ocpi, o.phenomenon_time),
        "observationDateTime": _time(o.phenomenon_time),
    }
    if ocpi in OCPI_TO_SDM:
        e["status"] = _prop(OCPI_TO_SDM[ocpi], o.phenomenon_time)
        e["availableCapacity"] = _prop(1 if ocpi == "AVAILABLE" else 0, o.phenomenon_time)
    return e


def encode(
    plan: SitePlan,
    observations: Iterable[Observation],
    socket_types: Sequence[str] = ("Other",),
) -> list[tuple[str, Entity]]:
    """(sensor id, NGSI-LD entity in normalised form) for each sensor that fits a model and
    each Observation time it has data for (a window is one time), in the order they come.

    `socket_types` fills EVChargingStation's mandatory `socketType` (SDM enum), which no
    charger protocol we read reports."""
    groups: dict[tuple[str, float, float | None], list[Observation]] = {}
    for o in observations:
        groups.setdefault((o.sensor_id, o.phenomenon_time, o.phenomenon_end), []).append(o)
    out: list[tuple[str, Entity]] = []
    for (sensor, _, _), group in groups.items():
        sp = plan.sensors.get(sensor)
        kind = kind_of(sp) if sp is not None else None
        if sp is None or kind is None:
            continue
        if kind == "AirQualityObserved":
            body = _air(sp, group)
        elif kind == "CrowdFlowObserved":
            body = _crowd(sp, group)
        else:
            body = _ev(group, socket_types)
        if body is None:
            continue
        out.append((sensor, {
            "id": entity_id(kind, plan.gateway_id, sp.id),
            "type": kind,
            **body,
            "location": _location(plan),
            "@context": context(kind),
        }))  # fmt: skip
    return out


def covered(plan: SitePlan) -> list[str]:
    """The sensors this format carries (the others fit no model)."""
    return [sp.id for sp in plan.sensors.values() if kind_of(sp) is not None]
