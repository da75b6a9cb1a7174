"""Open-data catalogue records for a gateway: DCAT-AP JSON-LD and a CKAN package dict. Pure.

The London Datastore (CKAN) and data.europa.eu-style harvesters (DCAT-AP) list what a gateway
publishes. Both records are generated from the same site plan that the gateway enforces, so a
catalogue entry can never promise a feed that the privacy stage withholds.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from firmware_bridge import units
from gateway.config import Config
from gateway.model import Datastream, iso_duration
from gateway.plan import SensorPlan, SitePlan
from gateway.sinks.influxdb import public_url
from gateway.standards.sensorthings import PHENOMENA, observation_topic

OGL_V3 = "http://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/"
CKAN_LICENCES = {
    OGL_V3: "uk-ogl",
    "https://creativecommons.org/licenses/by/4.0/": "cc-by",
    "https://creativecommons.org/publicdomain/zero/1.0/": "cc-zero",
    "http://opendatacommons.org/licenses/odbl/1-0/": "odc-odbl",
}
SENSORTHINGS_1_1 = "http://www.opengis.net/doc/is/sensorthings/1.1"
LINE_PROTOCOL = "https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/"
WKT = "http://www.opengis.net/ont/geosparql#wktLiteral"
JSON_MEDIA = "https://www.iana.org/assignments/media-types/application/json"

CONTEXT: dict[str, str] = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}

Json = dict[str, object]


def publisher_name(cfg: Config) -> str:
    """The data controller if the config names one (the privacy report's source), else the
    borough as configured."""
    return cfg.privacy.governance.controller or cfg.gateway.borough.replace("-", " ").title()


def temporal_resolution(sp: SensorPlan) -> str | None:
    """The aggregation window for aggregate-only sensors, else the sensor's configured reading
    interval (`options.interval_s`) when it has one; None rather than a guess."""
    if sp.aggregates and not sp.published:
        return iso_duration(sp.window_s)
    interval = getattr(sp.options, "interval_s", None)
    if isinstance(interval, int | float) and not isinstance(interval, bool) and interval > 0:
        return iso_duration(float(interval))
    return None


def _unit_text(ds: Datastream) -> str:
    return ds.unit if ds.unit is not None else "no unit (category/truth)"


def feeds(cfg: Config, sp: SensorPlan, ds: Datastream) -> list[Json]:
    """Where one Datastream can be read: each city MQTT feed's topic and each TSDB measurement."""
    out: list[Json] = []
    for _, m in cfg.sinks_of_type("mqtt"):
        broker = f"{'mqtts' if getattr(m, 'tls', True) else 'mqtt'}://{getattr(m, 'host', '')}:{getattr(m, 'port', '')}/"
        topic = observation_topic(str(getattr(m, "topic_prefix", "v1.1")), ds.id)
        out.append({"kind": "mqtt", "url": broker + quote(topic, safe="/"), "topic": topic,
                    "format": "JSON", "title": f"{sp.id} {ds.property} (MQTT)"})  # fmt: skip
    for _, tsdb in cfg.sinks_of_type("influxdb"):
        out.append({"kind": "tsdb", "url": public_url(str(getattr(tsdb, "url", ""))),
                    "measurement": ds.property,
                    "bucket": getattr(tsdb, "bucket", ""), "format": "InfluxDB line protocol",
                    "title": f"{sp.id} {ds.property} (time-series store)",
                    "tags": {"gateway": cfg.gateway.id, "sensor": sp.id,
                             "datastream": str(ds.id)}})  # fmt: skip
    return out


def _distribution(cfg: Config, sp: SensorPlan, ds: Datastream, feed: Json, licence: str) -> Json:
    unit = units.unit(ds.unit) if ds.unit and units.is_valid(ds.unit) else None
    described = f"{ds.description or ds.property}; unit {_unit_text(ds)}"
    d: Json = {
        "@id": f"urn:street-gateway:{cfg.gateway.id}:{sp.id}:{ds.property}:{feed['kind']}",
        "@type": "dcat:Distribution",
        "dct:title": feed["title"],
        "dct:description": described + (f" ({unit.name})" if unit else ""),
        "dcat:accessURL": {"@id": feed["url"]},
        "dct:license": {"@id": licence},
        "dct:type": {"@id": str(ds.observation_type)},
        "dct:identifier": str(ds.id),
    }
    if feed["kind"] == "mqtt":
        d["dct:conformsTo"] = {"@id": SENSORTHINGS_1_1}
        d["dcat:mediaType"] = {"@id": JSON_MEDIA}
        d["dct:description"] = f"{d['dct:description']}; topic {feed['topic']}"
    else:
        d["dct:conformsTo"] = {"@id": LINE_PROTOCOL}
        d["dct:description"] = (f"{d['dct:description']}; measurement {feed['measurement']}, "
                                f"tags gateway={cfg.gateway.id} sensor={sp.id} datastream={ds.id}")  # fmt: skip
    return d


def _dataset(cfg: Config, plan: SitePlan, sp: SensorPlan, licence: str, publisher: Json) -> Json:
    assert plan.shown_location is not None
    lon, lat = plan.shown_location
    cat = sp.catalogue
    names = ", ".join(PHENOMENA.get(k, (k, "", ""))[0] for k in sp.datastreams)
    ds: Json = {
        "@id": f"urn:street-gateway:{cfg.gateway.id}:{sp.id}",
        "@type": "dcat:Dataset",
        "dct:title": f"{cfg.gateway.name or cfg.gateway.id}: {sp.id} ({cat.make} {cat.model})",
        "dct:description": f"{sp.sensor.description or cat.description}. Publishes: {names}. "
                           "Personal data is removed on the gateway before publication.",
        "dct:publisher": publisher,
        "dct:identifier": f"{cfg.gateway.id}/{sp.id}",
        "dcat:keyword": sorted({cat.driver, *sp.datastreams}),
        "dct:spatial": {"@type": "dct:Location",
                        "dcat:centroid": {"@value": f"POINT({lon} {lat})", "@type": WKT}},
        "dcat:distribution": [
            _distribution(cfg, sp, d, feed, licence)
            for d in sp.datastreams.values() for feed in feeds(cfg, sp, d)
        ],
    }  # fmt: skip
    res = temporal_resolution(sp)
    if res is not None:
        ds["dcat:temporalResolution"] = {"@value": res, "@type": "xsd:duration"}
    return ds


def dcat_catalogue(
    cfg: Config, plan: SitePlan, licence: str = OGL_V3, title: str | None = None
) -> Json:
    """A DCAT-AP `dcat:Catalog` (JSON-LD, inline @context) with one Dataset per sensor."""
    g = cfg.gateway
    publisher: Json = {"@id": f"urn:street-gateway:publisher:{g.borough}", "@type": "foaf:Agent",
                       "foaf:name": publisher_name(cfg)}  # fmt: skip
    return {
        "@context": dict(CONTEXT),
        "@id": f"urn:street-gateway:{g.id}",
        "@type": "dcat:Catalog",
        "dct:title": title or f"Street sensors: {g.name or g.id}",
        "dct:description": g.description or (
            f"Open data from street sensor gateway {g.id} in {g.borough}: readings in "
            "OGC SensorThings API 1.1 with UCUM units; locations coarsened to a "
            f"{cfg.privacy.location_grid_m:g} m grid."),
        "dct:publisher": publisher,
        "dct:license": {"@id": licence},
        "dcat:dataset": [_dataset(cfg, plan, sp, licence, publisher) for sp in plan.sensors.values()],
    }  # fmt: skip


def ckan_name(text: str) -> str:
    """CKAN names: 2-100 chars of lowercase letters, digits, '-' and '_'."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")
    return name[:100] if len(name) >= 2 else f"{name}-data"


def ckan_package(
    cfg: Config, plan: SitePlan, licence: str = OGL_V3, title: str | None = None
) -> Json:
    """A CKAN `package_create` dict: one resource per feed (MQTT topic or TSDB measurement)."""
    g = cfg.gateway
    tags = sorted({"street-sensors", "sensorthings", *(sp.catalogue.driver for sp in plan.sensors.values()),
                   *(k for sp in plan.sensors.values() for k in sp.datastreams)})  # fmt: skip
    resources: list[Json] = []
    for sp in plan.sensors.values():
        for ds in sp.datastreams.values():
            for feed in feeds(cfg, sp, ds):
                resources.append({
                    "name": feed["title"],
                    "url": feed["url"],
                    "format": feed["format"],
                    "description": (f"{ds.description or ds.property}; unit {_unit_text(ds)}; "
                                    f"observationType {ds.observation_type}; "
                                    + (f"topic {feed['topic']}" if feed["kind"] == "mqtt"
                                       else f"measurement {feed['measurement']}")),
                })  # fmt: skip
    assert plan.shown_location is not None
    lon, lat = plan.shown_location
    extras = {
        "gateway_id": g.id,
        "spatial": f'{{"type":"Point","coordinates":[{lon},{lat}]}}',
        "location_grid_m": f"{cfg.privacy.location_grid_m:g}",
        "standard": "OGC SensorThings API 1.1",
        "units": "UCUM",
    }
    if g.usrn:
        extras["usrn"] = g.usrn
    return {
        "name": ckan_name(f"{g.id}-street-sensors"),
        "title": title or f"Street sensors: {g.name or g.id}",
        "notes": g.description or f"Open data from street sensor gateway {g.id} in {g.borough}.",
        "license_id": CKAN_LICENCES.get(licence, "other-open"),
        "owner_org": ckan_name(g.borough),
        "organization": {"name": ckan_name(g.borough), "title": publisher_name(cfg)},
        "tags": [{"name": t} for t in tags],
        "extras": [{"key": k, "value": v} for k, v in sorted(extras.items())],
        "resources": resources,
    }
