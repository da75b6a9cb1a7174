"""SensorThings API 1.1 entities (Thing, Location, Sensor, ObservedProperty, Datastream). Pure.

Built from the site plan alone, so the metadata a consumer sees is exactly what the gateway
enforces (location coarsened, zones applied); ids are `stable_id` hashes of config names, so a
restart or a reinstall publishes the same entities. The MQTT sink publishes `entity_messages()` retained and re-sends
them only when `config_fingerprint()` changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from firmware_bridge import units
from firmware_bridge.base import Catalogue, ObservationType
from gateway.model import Datastream, iso_duration, stable_id

if TYPE_CHECKING:  # the plan imports the config, which imports the sinks, which import this
    from gateway.plan import SensorPlan, Site, SitePlan

Json = dict[str, object]
Message = tuple[str, Json]

DEFAULT_PREFIX = "v1.1"
GEOJSON = "application/geo+json"
EEA = "http://dd.eionet.europa.eu/vocabulary/aq/pollutant/"
QUDT = "http://qudt.org/vocab/quantitykind/"
OCPI_STATUS = "https://github.com/ocpi/ocpi/blob/2.2.1/mod_locations.asciidoc#mod_locations_status_enum"
LOCAL_PROPERTY = "urn:x-street-gateway:property:"


# Phenomena shared by every gateway: (name, definition URI, description). A property in this
# table has one city-wide ObservedProperty id, so a consumer can join PM2.5 across boroughs.
PHENOMENA: dict[str, tuple[str, str, str]] = {
    "pm1_0": ("PM1", f"{EEA}6002", "Mass concentration of particulate matter < 1 µm"),
    "pm2_5": ("PM2.5", f"{EEA}6001", "Mass concentration of particulate matter < 2.5 µm"),
    "pm4_0": ("PM4", f"{QUDT}MassConcentration", "Mass concentration of particulate matter < 4 µm"),
    "pm10": ("PM10", f"{EEA}5", "Mass concentration of particulate matter < 10 µm"),
    "no2": ("NO2", f"{EEA}8", "Nitrogen dioxide concentration in air"),
    "co2": ("CO2", f"{EEA}71", "Carbon dioxide mole fraction in air"),
    "temperature": ("Temperature", f"{QUDT}Temperature", "Temperature"),
    "humidity": ("Relative humidity", f"{QUDT}RelativeHumidity", "Relative humidity of air"),
    "voltage": ("Voltage", f"{QUDT}Voltage", "Electric potential difference"),
    "current": ("Current", f"{QUDT}ElectricCurrent", "Electric current"),
    "pilot_current": ("Pilot current", f"{QUDT}ElectricCurrent",
                      "Charging current offered to the vehicle (J1772 pilot)"),
    "power": ("Active power", f"{QUDT}ActivePower", "Active electrical power"),
    "frequency": ("Frequency", f"{QUDT}Frequency", "Supply frequency"),
    "energy": ("Energy register", f"{QUDT}Energy", "Active energy meter register"),
    "energy_import": ("Imported energy", f"{QUDT}Energy", "Imported active energy register"),
    "energy_total": ("Total energy", f"{QUDT}Energy", "Total active energy register"),
    "total_energy": ("Total energy", f"{QUDT}Energy", "Lifetime energy register of a charger"),
    "energy_delivered": ("Energy delivered", f"{QUDT}Energy",
                         "Energy delivered to vehicles in the aggregation window"),
    "status": ("EVSE status", OCPI_STATUS, "EVSE status in the OCPI 2.2.1 vocabulary"),
    "connector_status": ("EVSE status", OCPI_STATUS, "EVSE status in the OCPI 2.2.1 vocabulary"),
    "footfall": ("Footfall", f"{QUDT}Count", "Distinct devices heard in the aggregation window"),
}  # fmt: skip


def thing_id(gateway_id: str) -> int:
    return stable_id("thing", gateway_id)


def location_id(gateway_id: str) -> int:
    return stable_id("location", gateway_id)


def sensor_id(gateway_id: str, sensor: str) -> int:
    return stable_id("sensor", gateway_id, sensor)


def observed_property_id(gateway_id: str, prop: str) -> int:
    """City-wide for the phenomena in PHENOMENA; per gateway for driver-defined ones (a
    generic_json `level` on one gateway need not mean what it means on another)."""
    if prop in PHENOMENA:
        return stable_id("observedproperty", prop)
    return stable_id("observedproperty", gateway_id, prop)


def _ref(iot_id: int) -> Json:
    return {"@iot.id": iot_id}


def _site(plan: SitePlan) -> Site:
    if plan.site is None:
        raise AssertionError("build_plan always sets the site")
    return plan.site


def thing(plan: SitePlan, software_version: str | None = None) -> Json:
    g = _site(plan)
    props: Json = {"borough": g.borough, "gatewayId": g.gateway_id, "software": "street-gateway"}
    if software_version:
        props["softwareVersion"] = software_version
    # A UPRN is one address, a USRN one street: the plan's site carries them only when the
    # config opts in (gateway.publish_address_keys), so the open data never shows them otherwise.
    if g.usrn:
        props["usrn"] = g.usrn
    if g.uprn:
        props["uprn"] = g.uprn
    props["locationGridMetres"] = plan.shown_grid_m
    return {
        "@iot.id": thing_id(g.gateway_id),
        "name": g.name,
        "description": g.description,
        "properties": props,
        "Locations": [_ref(location_id(g.gateway_id))],
    }


def location(plan: SitePlan) -> Json:
    g = _site(plan)
    if plan.shown_location is None:
        raise AssertionError("plan.shown_location is not None")
    lon, lat = plan.shown_location
    grid = plan.shown_grid_m
    return {
        "@iot.id": location_id(g.gateway_id),
        "name": g.name,
        "description": (f"Site of gateway {g.gateway_id}, snapped to a {grid:g} m grid" if grid > 0
                        else f"Site of gateway {g.gateway_id}"),
        "encodingType": GEOJSON,
        "location": {"type": "Point", "coordinates": [lon, lat]},
    }  # fmt: skip


def _sensor_metadata(cat: Catalogue) -> tuple[str, str]:
    """(encodingType, metadata). Catalogues cite a datasheet by URL or by title; a title names a
    printed (PDF) datasheet, so it is published as such rather than invented as a link."""
    ref = cat.datasheet or f"{cat.make} {cat.model}"
    if ref.startswith(("http://", "https://")):
        return ("application/pdf" if ref.lower().endswith(".pdf") else "text/html"), ref
    return "application/pdf", ref


def sensor(gateway_id: str, sp: SensorPlan) -> Json:
    cat = sp.catalogue
    encoding, metadata = _sensor_metadata(cat)
    description = sp.sensor.description or cat.description
    return {
        "@iot.id": sensor_id(gateway_id, sp.id),
        "name": f"{sp.id} ({cat.make} {cat.model})",
        "description": description,
        "encodingType": encoding,
        "metadata": metadata,
        "properties": {"make": cat.make, "model": cat.model, "driver": sp.driver.name,
                       "sensorId": sp.id},
    }  # fmt: skip


def observed_property(gateway_id: str, ds: Datastream) -> Json:
    name, definition, description = PHENOMENA.get(
        ds.property, (ds.property, f"{LOCAL_PROPERTY}{ds.property}", ds.description or ds.property)
    )
    return {
        "@iot.id": observed_property_id(gateway_id, ds.property),
        "name": name,
        "definition": definition,
        "description": description,
    }


def unit_of_measurement(ds: Datastream) -> dict[str, str | None]:
    """UCUM triple; null name/symbol/definition for streams without a unit (categories,
    truths), as SensorThings 1.1 requires."""
    if ds.unit is None or ds.observation_type in (ObservationType.CATEGORY, ObservationType.TRUTH):
        return {"name": None, "symbol": None, "definition": None}
    if not units.is_valid(ds.unit):  # build_plan refuses these; kept total for hand-built plans
        return {"name": ds.unit, "symbol": ds.unit, "definition": "http://unitsofmeasure.org/ucum.html"}
    u = units.unit(ds.unit)
    return {"name": u.name, "symbol": u.symbol, "definition": u.definition}


def datastream(gateway_id: str, sp: SensorPlan, ds: Datastream) -> Json:
    props: Json = {"sensorId": sp.id, "property": ds.property, "aggregation": ds.aggregation}
    if ds.unit is not None:
        props["ucum"] = ds.unit
    if ds.aggregation != "none":
        props["period"] = iso_duration(sp.window_s)
        props["minCount"] = sp.min_count
    return {
        "@iot.id": ds.id,
        "name": f"{gateway_id} {sp.id} {ds.property}",
        "description": ds.description or f"{ds.property} from {sp.id}",
        "observationType": str(ds.observation_type),
        "unitOfMeasurement": unit_of_measurement(ds),
        "properties": props,
        "Thing": _ref(thing_id(gateway_id)),
        "Sensor": _ref(sensor_id(gateway_id, sp.id)),
        "ObservedProperty": _ref(observed_property_id(gateway_id, ds.property)),
    }


def entities(plan: SitePlan, software_version: str | None = None) -> dict[str, list[Json]]:
    """Every entity by collection name; ObservedProperties de-duplicated by id."""
    gw = plan.gateway_id
    sensors: list[Json] = []
    props: dict[int, Json] = {}
    streams: list[Json] = []
    for sp in plan.sensors.values():
        sensors.append(sensor(gw, sp))
        for ds in sp.datastreams.values():
            props.setdefault(observed_property_id(gw, ds.property), observed_property(gw, ds))
            streams.append(datastream(gw, sp, ds))
    return {
        "Locations": [location(plan)],
        "Things": [thing(plan, software_version)],
        "Sensors": sensors,
        "ObservedProperties": list(props.values()),
        "Datastreams": streams,
    }


def entity_messages(
    plan: SitePlan, prefix: str = DEFAULT_PREFIX, software_version: str | None = None
) -> list[Message]:
    """(topic, payload) for each retained metadata message, e.g. `v1.1/Things(<id>)`.

    Order: Location, Thing, Sensors, ObservedProperties, Datastreams — referenced entities first
    (a Thing links its Location), so a consumer that creates as it reads never sees a dangling
    link."""
    prefix = prefix.rstrip("/")
    out: list[Message] = []
    for collection, items in entities(plan, software_version).items():
        for body in items:
            out.append((f"{prefix}/{collection}({body['@iot.id']})", body))
    return out


def observation_topic(prefix: str, datastream_id: int) -> str:
    return f"{prefix.rstrip('/')}/Datastreams({datastream_id})/Observations"


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def config_fingerprint(messages: Iterable[Message] | Mapping[str, object]) -> str:
    """sha256 hex of the canonical JSON of the metadata: equal iff the published metadata would
    be identical, so the sink re-publishes retained entities only after a config change."""
    if isinstance(messages, Mapping):
        return hashlib.sha256(canonical_json(messages)).hexdigest()
    # the canonical JSON of the list, hashed one message at a time: the same bytes (a JSON array
    # is its items' JSON joined by commas), without the whole text and the encoder's pieces of
    # it at once: for 32 sensors' 133 messages a Python heap peak of 409 KiB, and 0.2 MiB of RSS
    # that stayed after the MQTT feed's first connection
    digest = hashlib.sha256(b"[")
    for i, message in enumerate(messages):
        if i:
            digest.update(b",")
        digest.update(canonical_json(message))
    digest.update(b"]")
    return digest.hexdigest()
