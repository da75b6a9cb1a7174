"""Optional NGSI-LD export (FIWARE Smart Data Models) of the latest Observations. Pure.

Some city platforms (Orion-LD, Scorpio) take NGSI-LD rather than SensorThings. This maps a
sensor's latest observations to one entity: AirQualityObserved for air sensors,
CrowdFlowObserved for footfall windows, EVChargingStation for EVSE status. It reads only
Observations — already non-personal — and copies only the attributes listed here, so session,
transaction, idTag or state-of-charge data cannot appear even if a driver learned them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.model import Observation, iso
from gateway.plan import SensorPlan, SitePlan

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
ENVIRONMENT_CONTEXT = "https://smart-data-models.github.io/dataModel.Environment/context.jsonld"
TRANSPORTATION_CONTEXT = "https://smart-data-models.github.io/dataModel.Transportation/context.jsonld"

Entity = dict[str, object]


@dataclass(frozen=True, slots=True)
class Attr:
    name: str  # Smart Data Models attribute
    unit_code: str | None = None  # UN/CEFACT common code
    factor: float = 1.0


# gateway property -> AirQualityObserved attribute (UN/CEFACT: GQ µg/m³, GP mg/m³, 59 ppm,
# 61 ppb, CEL °C, C62 "one" for a 0..1 fraction)
AIR: dict[str, Attr] = {
    "pm1_0": Attr("pm1", "GQ"),
    "pm2_5": Attr("pm25", "GQ"),
    "pm10": Attr("pm10", "GQ"),
    "no2": Attr("no2", "GQ"),
    "co2": Attr("co2", "59"),
    "temperature": Attr("temperature", "CEL"),
    "humidity": Attr("relativeHumidity", "C62", 0.01),  # SDM: a fraction, not a percentage
}

# gateway property -> CrowdFlowObserved.peopleCount. Only counts of people: an Axis `occupancy`
# is people present now, not SDM's occupancy (a fraction of time), so it is not mapped.
CROWD: dict[str, Attr] = {
    "footfall": Attr("peopleCount"),
    "passages_human": Attr("peopleCount"),
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


def _latest(observations: Iterable[Observation]) -> dict[tuple[str, str], Observation]:
    latest: dict[tuple[str, str], Observation] = {}
    for o in observations:
        k = (o.sensor_id, o.property)
        if k not in latest or o.phenomenon_time >= latest[k].phenomenon_time:
            latest[k] = o
    return latest


def _end(o: Observation) -> float:
    return o.phenomenon_end if o.phenomenon_end is not None else o.phenomenon_time


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
    assert plan.shown_location is not None
    lon, lat = plan.shown_location
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def _numeric(o: Observation) -> float | int | None:
    r = o.result
    return r if isinstance(r, int | float) and not isinstance(r, bool) else None


def _air(sp: SensorPlan, obs: dict[str, Observation]) -> Entity | None:
    e: Entity = {}
    times: list[float] = []
    for key, attr in AIR.items():
        o = obs.get(key)
        v = _numeric(o) if o is not None else None
        if o is None or v is None:
            continue
        e[attr.name] = _prop(_scaled(v, attr.factor), _end(o), attr.unit_code)
        times.append(_end(o))
    if not e:
        return None
    return {"dateObserved": _time(max(times)), **e}


def _crowd(sp: SensorPlan, obs: dict[str, Observation]) -> Entity | None:
    o = next((obs[k] for k in CROWD if k in obs), None)
    if o is None:
        return None
    e: Entity = {"dateObserved": _time(_end(o))}
    if o.phenomenon_end is not None:
        e["dateObservedFrom"] = _time(o.phenomenon_time)
        e["dateObservedTo"] = _time(o.phenomenon_end)
    v = _numeric(o)
    if v is not None:  # a suppressed small count is left out, never sent as a number
        e[CROWD[o.property].name] = _prop(v, _end(o))
    return e


def _ev(
    sp: SensorPlan, obs: dict[str, Observation], socket_types: Sequence[str]
) -> Entity | None:
    o = next((obs[k] for k in EV_STATUS_PROPERTIES if k in obs), None)
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


def entities(
    plan: SitePlan,
    observations: Iterable[Observation],
    socket_types: Sequence[str] = ("Other",),
) -> list[Entity]:
    """One NGSI-LD entity (normalised form) per sensor that fits a model and has data.

    `socket_types` fills EVChargingStation's mandatory `socketType` (SDM enum), which no
    charger protocol we read reports."""
    latest = _latest(observations)
    out: list[Entity] = []
    for sp in plan.sensors.values():
        kind = kind_of(sp)
        obs = {p: o for (s, p), o in latest.items() if s == sp.id}
        if kind is None or not obs:
            continue
        if kind == "AirQualityObserved":
            body, ctx = _air(sp, obs), ENVIRONMENT_CONTEXT
        elif kind == "CrowdFlowObserved":
            body, ctx = _crowd(sp, obs), TRANSPORTATION_CONTEXT
        else:
            body, ctx = _ev(sp, obs, socket_types), TRANSPORTATION_CONTEXT
        if body is None:
            continue
        out.append({
            "id": entity_id(kind, plan.gateway_id, sp.id),
            "type": kind,
            **body,
            "location": _location(plan),
            "@context": [ctx, CORE_CONTEXT],
        })  # fmt: skip
    return out
