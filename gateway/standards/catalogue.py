"""Open-data catalogue records for a gateway: DCAT-AP 3.0 JSON-LD and a CKAN package dict. Pure.

The London Datastore (CKAN) and data.europa.eu-style harvesters (DCAT-AP) list what a gateway
publishes. Both records are generated from the same site plan that the gateway enforces, so a
catalogue entry can never promise a feed that the privacy stage withholds. One Dataset per
sensor; one Distribution per sink instance that offers the sensor's data to consumers (each
sink's `offers`, in its format), so a feed in SensorThings, SenML and NGSI-LD is three
distributions. What the config does not say comes from its `catalogue:` section; `gaps` names
what is still missing, for `check`. Secrets are never read: offers are built from hosts, topics
and URLs only.

Every node is typed as SEMIC's DCAT-AP 3.0 range shapes require (licences `dct:LicenseDocument`,
standards `dct:Standard`, media types `dct:MediaType`, concepts `skos:Concept` with a label…),
and controlled values come from the EU vocabularies DCAT-AP names (data themes, languages,
file types, frequencies, access rights, planned availability) and ADMS (publisher and licence
types). `tests/unit/test_catalogue.py` checks every example config with pyshacl: no violation.
"""

from __future__ import annotations

import math
import re
from typing import Any

from firmware_bridge import units
from gateway.config import Config, Loc
from gateway.model import Datastream, iso_duration
from gateway.plan import SensorPlan, SitePlan
from gateway.sinks import SINKS
from gateway.sinks.base import Offer
from gateway.standards.formats import DESCRIBED, FILE_TYPE, IANA
from gateway.standards.sensorthings import PHENOMENA

OGL_V3 = "http://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/"
CC_BY_4 = "https://creativecommons.org/licenses/by/4.0/"
CC0 = "https://creativecommons.org/publicdomain/zero/1.0/"
ODBL = "http://opendatacommons.org/licenses/odbl/1-0/"
CKAN_LICENCES = {OGL_V3: "uk-ogl", CC_BY_4: "cc-by", CC0: "cc-zero", ODBL: "odc-odbl"}
# ADMS licence types of the licences the gateway knows (the recommended dct:type of a licence)
ADMS_LICENCE = "http://purl.org/adms/licencetype/"
LICENCE_TYPES: dict[str, tuple[tuple[str, str], ...]] = {
    OGL_V3: (("Attribution", "Attribution"),),
    CC_BY_4: (("Attribution", "Attribution"),),
    CC0: (("PublicDomain", "Public domain"),),
    ODBL: (("Attribution", "Attribution"), ("ShareAlike", "Share alike")),
}
LICENCE_TITLES = {OGL_V3: "Open Government Licence v3.0", CC_BY_4: "Creative Commons Attribution 4.0",
                  CC0: "Creative Commons CC0 1.0", ODBL: "Open Data Commons Open Database License 1.0"}  # fmt: skip

EU = "http://publications.europa.eu/resource/authority/"
THEMES = f"{EU}data-theme"
THEME_LABELS = {
    "AGRI": "Agriculture, fisheries, forestry and food", "ECON": "Economy and finance",
    "EDUC": "Education, culture and sport", "ENER": "Energy", "ENVI": "Environment",
    "GOVE": "Government and public sector", "HEAL": "Health", "INTR": "International issues",
    "JUST": "Justice, legal system and public safety", "OP_DATPRO": "Provisional data",
    "REGI": "Regions and cities", "SOCI": "Population and society", "TECH": "Science and technology",
    "TRAN": "Transport",
}  # fmt: skip
# what a sensor measures -> EU data themes (the config's `catalogue.themes` replaces these)
THEME_OF: dict[str, tuple[str, ...]] = {
    **{p: ("ENVI",) for p in ("pm1_0", "pm2_5", "pm4_0", "pm10", "no2", "co2", "temperature",
                              "humidity", "noise")},
    **{p: ("ENER",) for p in ("voltage", "current", "power", "frequency", "energy", "energy_import",
                              "energy_total", "total_energy")},
    **{p: ("TRAN", "ENER") for p in ("status", "connector_status", "energy_delivered",
                                     "sessions_started", "pilot_current")},
    **{p: ("SOCI",) for p in ("footfall", "wifi_devices", "ble_devices")},
}  # fmt: skip
PUBLISHER_TYPE = "http://purl.org/adms/publishertype/"
AVAILABILITY = f"{EU}planned-availability/"
WKT = "http://www.opengis.net/ont/geosparql#wktLiteral"
METRES_PER_DEGREE = 111_320.0

CONTEXT: dict[str, str] = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "dcatap": "http://data.europa.eu/r5r/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}

Json = dict[str, object]


def publisher_name(cfg: Config) -> str:
    """`catalogue.publisher`, else the data controller (the privacy report's source), else the
    borough as configured."""
    return (cfg.catalogue.publisher or cfg.privacy.governance.controller
            or cfg.gateway.borough.replace("-", " ").title())  # fmt: skip


def temporal_resolution(sp: SensorPlan) -> str | None:
    """The aggregation window for aggregate-only sensors, else the sensor's configured reading
    interval (`options.interval_s`) when it has one; None rather than a guess."""
    if sp.aggregates and not sp.published:
        return iso_duration(sp.window_s)
    interval = getattr(sp.options, "interval_s", None)
    if isinstance(interval, int | float) and not isinstance(interval, bool) and interval > 0:
        return iso_duration(float(interval))
    return None


def themes(cfg: Config, sp: SensorPlan) -> list[str]:
    if cfg.catalogue.themes is not None:
        return list(cfg.catalogue.themes)
    found: list[str] = []
    for prop in sp.datastreams:
        for t in THEME_OF.get(prop, ()):
            if t not in found:
                found.append(t)
    return found or ["TECH"]


def offers(cfg: Config, plan: SitePlan) -> list[tuple[str, Offer]]:
    """(sink name, offer) for every sink instance and sensor it carries, as each sink's spec
    says (no module here names a sink type)."""
    return [(name, o) for name, s in cfg.sinks.items() for o in SINKS[s.type].offers(name, s, plan)]


def gaps(cfg: Config) -> list[tuple[Loc, str]]:
    """What the catalogue record would miss that DCAT-AP recommends: `check` prints these as
    warnings (the record is valid without them)."""
    c = cfg.catalogue
    out: list[tuple[Loc, str]] = []
    if c.contact is None:
        out.append((("catalogue", "contact"), "no contact point for the catalogue record (DCAT-AP recommends one): give catalogue.contact {name, email or url}"))  # fmt: skip
    if c.issued is None:
        out.append((("catalogue", "issued"), "no first publication date: the catalogue record has no issued date and no temporal coverage"))  # fmt: skip
    if c.homepage is None:
        out.append((("catalogue", "homepage"), "no catalogue homepage (DCAT-AP recommends one)"))
    if c.licence not in LICENCE_TYPES:
        out.append((("catalogue", "licence"), "a licence the gateway does not know: the record cannot say its type (attribution, public domain…)"))  # fmt: skip
    return out


# --------------------------------------------------------------------------- DCAT-AP nodes


def _concept(iri: str, label: str, scheme: str | None = None) -> Json:
    node: Json = {"@id": iri, "@type": "skos:Concept", "skos:prefLabel": label}
    if scheme is not None:
        node["skos:inScheme"] = {"@id": scheme}
    return node


def _date(d: Any) -> Json:
    return {"@value": d.isoformat(), "@type": "xsd:date"}


def _licence(iri: str) -> Json:
    node: Json = {"@id": iri, "@type": "dct:LicenseDocument"}
    if iri in LICENCE_TITLES:
        node["dct:title"] = LICENCE_TITLES[iri]
    types = [_concept(ADMS_LICENCE + code, label, f"{ADMS_LICENCE}1.0") for code, label in LICENCE_TYPES.get(iri, ())]
    if types:
        node["dct:type"] = types
    return node


def _ref(iri: str) -> Json:
    """A node described elsewhere in the document (its types are there)."""
    return {"@id": iri}


def _once(node: Json, described: set[str]) -> Json:
    """The node in full the first time it occurs in the document, a reference after that."""
    iri = str(node["@id"])
    if iri in described:
        return _ref(iri)
    described.add(iri)
    return node


def _location(cfg: Config, plan: SitePlan) -> Json:
    """The site as published: the plan's shown position and the square of the grid it was
    snapped to (1 km when a privacy zone withholds the site), never the configured point."""
    if plan.shown_location is None:
        raise AssertionError("plan.shown_location is not None")
    lon, lat = plan.shown_location
    half = max(plan.shown_grid_m, 1.0) / 2
    dlat = half / METRES_PER_DEGREE
    dlon = half / (METRES_PER_DEGREE * max(math.cos(math.radians(lat)), 1e-6))
    w, e, s, n = (round(v, 6) for v in (lon - dlon, lon + dlon, lat - dlat, lat + dlat))
    return {
        "@id": f"urn:street-gateway:{cfg.gateway.id}:site",
        "@type": "dct:Location",
        "dcat:centroid": {"@value": f"POINT({lon} {lat})", "@type": WKT},
        "dcat:bbox": {"@value": f"POLYGON(({w} {s}, {e} {s}, {e} {n}, {w} {n}, {w} {s}))", "@type": WKT},
    }


def _contact(cfg: Config) -> Json | None:
    c = cfg.catalogue.contact
    if c is None:
        return None
    node: Json = {"@id": f"urn:street-gateway:{cfg.gateway.id}:contact",
                  "@type": ["vcard:Kind", "vcard:Organization"], "vcard:fn": c.name}  # fmt: skip
    if c.email:
        node["vcard:hasEmail"] = {"@id": f"mailto:{c.email}"}
    if c.url:
        node["vcard:hasURL"] = {"@id": c.url}
    return node


def _unit_text(ds: Datastream) -> str:
    if ds.unit is None:
        return "no unit (category/truth)"
    u = units.unit(ds.unit) if units.is_valid(ds.unit) else None
    return f"{ds.unit} ({u.name})" if u is not None else ds.unit


def _distribution(cfg: Config, sp: SensorPlan, sink: str, offer: Offer, licence: str, typed: set[str]) -> Json:
    fmt = DESCRIBED[offer.format]
    streams = "; ".join(f"{p}: {ds.description or p}, {_unit_text(ds)}, {ds.observation_type.rsplit('/', 1)[-1]}"
                        for p, ds in sp.datastreams.items())  # fmt: skip

    def once(node: Json) -> Json:
        return _once(node, typed)

    d: Json = {
        "@id": f"urn:street-gateway:{cfg.gateway.id}:{sp.id}:{sink}",
        "@type": "dcat:Distribution",
        "dct:title": offer.title,
        "dct:description": f"{offer.description}. {fmt.label}. Datastreams: {streams}.",
        "dcat:accessURL": [{"@id": url} for url in offer.access_urls],
        "dct:license": _ref(licence),
        "dct:format": once({"@id": FILE_TYPE + fmt.file_type, "@type": "dct:MediaTypeOrExtent",
                            "skos:inScheme": {"@id": FILE_TYPE.rstrip("/")}}),
        "dcat:mediaType": once({"@id": IANA + fmt.media_type, "@type": "dct:MediaType"}),
        "dct:conformsTo": once({"@id": fmt.standard, "@type": "dct:Standard", "dct:title": fmt.standard_title}),
        "dcatap:availability": once(_concept(AVAILABILITY + cfg.catalogue.availability.upper(),
                                             cfg.catalogue.availability, AVAILABILITY.rstrip("/"))),
    }  # fmt: skip
    return d


def _dataset(cfg: Config, plan: SitePlan, sp: SensorPlan, dists: list[tuple[str, Offer]], licence: str,
             publisher: str, typed: set[str]) -> Json:  # fmt: skip
    cat = sp.catalogue
    names = ", ".join(PHENOMENA.get(k, (k, "", ""))[0] for k in sp.datastreams)
    c = cfg.catalogue
    ds: Json = {
        "@id": f"urn:street-gateway:{cfg.gateway.id}:{sp.id}",
        "@type": "dcat:Dataset",
        "dct:title": f"{cfg.gateway.name or cfg.gateway.id}: {sp.id} ({cat.make} {cat.model})",
        "dct:description": f"{sp.sensor.description or cat.description}. Publishes: {names}. "
                           "Personal data is removed on the gateway before publication.",
        "dct:publisher": _ref(publisher),
        "dct:identifier": f"{cfg.gateway.id}/{sp.id}",
        "dcat:keyword": sorted({cat.driver, *sp.datastreams, *c.keywords}),
        "dcat:theme": [_concept(f"{THEMES}/{t}", THEME_LABELS[t], THEMES) for t in themes(cfg, sp)],
        "dct:spatial": _ref(f"urn:street-gateway:{cfg.gateway.id}:site"),
        "dct:accrualPeriodicity": {"@id": f"{EU}frequency/UPDATE_CONT", "@type": "dct:Frequency"},
        "dct:accessRights": {"@id": f"{EU}access-right/{c.access_rights}", "@type": "dct:RightsStatement"},
        "dct:language": [_ref(f"{EU}language/{lang}") for lang in c.languages],
        "dcat:distribution": [_distribution(cfg, sp, name, o, licence, typed) for name, o in dists],
    }  # fmt: skip
    contact = _contact(cfg)
    if contact is not None:
        ds["dcat:contactPoint"] = _once(contact, typed)
    if c.issued is not None:
        ds["dct:issued"] = _date(c.issued)
        ds["dct:temporal"] = {"@type": "dct:PeriodOfTime", "dcat:startDate": _date(c.issued)}
    if c.modified or c.issued:
        ds["dct:modified"] = _date(c.modified or c.issued)
    res = temporal_resolution(sp)
    if res is not None:
        ds["dcat:temporalResolution"] = {"@value": res, "@type": "xsd:duration"}
    if plan.shown_grid_m > 0:
        ds["dcat:spatialResolutionInMeters"] = {"@value": f"{plan.shown_grid_m:g}", "@type": "xsd:decimal"}
    return ds


def dcat_catalogue(cfg: Config, plan: SitePlan, licence: str | None = None, title: str | None = None) -> Json:
    """A DCAT-AP 3.0 `dcat:Catalog` (JSON-LD, inline @context) with one Dataset per sensor.
    `licence` and `title` override `catalogue.licence` and `catalogue.title`."""
    g = cfg.gateway
    c = cfg.catalogue
    licence = licence or c.licence
    publisher: Json = {
        "@id": f"urn:street-gateway:publisher:{g.borough}",
        "@type": "foaf:Agent",
        "foaf:name": publisher_name(cfg),
        "dct:type": _concept(PUBLISHER_TYPE + c.publisher_type, re.sub(r"(?<=[a-z])(?=[A-Z])", " ", c.publisher_type),
                             f"{PUBLISHER_TYPE}1.0"),
    }  # fmt: skip
    by_sensor: dict[str, list[tuple[str, Offer]]] = {}
    for name, o in offers(cfg, plan):
        by_sensor.setdefault(o.sensor, []).append((name, o))
    typed: set[str] = set()
    doc: Json = {
        "@context": dict(CONTEXT),
        "@id": f"urn:street-gateway:{g.id}",
        "@type": "dcat:Catalog",
        "dct:title": title or c.title or f"Street sensors: {g.name or g.id}",
        "dct:description": c.description or g.description or (
            f"Open data from street sensor gateway {g.id} in {g.borough}: readings in "
            "OGC SensorThings API 1.1 with UCUM units; locations coarsened to a "
            f"{plan.shown_grid_m:g} m grid."),
        "dct:publisher": publisher,
        "dct:license": _licence(licence),
        "dct:language": [{"@id": f"{EU}language/{lang}", "@type": "dct:LinguisticSystem",
                          "skos:inScheme": {"@id": f"{EU}language"}} for lang in c.languages],
        "dct:spatial": _location(cfg, plan),
        "dcat:themeTaxonomy": {"@id": THEMES, "@type": "skos:ConceptScheme", "dct:title": "Data theme"},
    }  # fmt: skip
    if c.issued is not None:
        doc["dct:issued"] = _date(c.issued)
    if c.modified or c.issued:
        doc["dct:modified"] = _date(c.modified or c.issued)
    if c.homepage is not None:
        doc["foaf:homepage"] = {"@id": c.homepage, "@type": "foaf:Document"}
    doc["dcat:dataset"] = [_dataset(cfg, plan, sp, by_sensor.get(sp.id, []), licence, str(publisher["@id"]), typed)
                           for sp in plan.sensors.values()]  # fmt: skip
    return doc


# --------------------------------------------------------------------------- CKAN


def ckan_name(text: str) -> str:
    """CKAN names: 2-100 chars of lowercase letters, digits, '-' and '_'."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")
    return name[:100] if len(name) >= 2 else f"{name}-data"


CKAN_FORMATS = {"sensorthings": "JSON", "senml": "SenML", "ngsi-ld": "JSON-LD", "line-protocol": "InfluxDB line protocol"}


def ckan_package(cfg: Config, plan: SitePlan, licence: str | None = None, title: str | None = None) -> Json:
    """A CKAN `package_create` dict: one resource per sensor and sink instance that offers it."""
    g = cfg.gateway
    c = cfg.catalogue
    licence = licence or c.licence
    tags = sorted({"street-sensors", "sensorthings", *c.keywords, *(sp.catalogue.driver for sp in plan.sensors.values()),
                   *(k for sp in plan.sensors.values() for k in sp.datastreams)})  # fmt: skip
    resources: list[Json] = []
    for _, o in offers(cfg, plan):
        resources.append({
            "name": o.title,
            "url": o.access_urls[0],
            "format": CKAN_FORMATS.get(o.format, o.format),
            "mimetype": DESCRIBED[o.format].media_type,
            "description": f"{o.description}. {DESCRIBED[o.format].label}.",
        })  # fmt: skip
    if plan.shown_location is None:
        raise AssertionError("plan.shown_location is not None")
    lon, lat = plan.shown_location
    extras = {
        "gateway_id": g.id,
        "spatial": f'{{"type":"Point","coordinates":[{lon},{lat}]}}',
        "location_grid_m": f"{plan.shown_grid_m:g}",
        "standard": "OGC SensorThings API 1.1",
        "units": "UCUM",
        "frequency": "continuous",
    }
    site = plan.site
    # address-level keys are on the plan's site only when the config opts in (build_plan)
    extras.update({k: v for k, v in (("usrn", site and site.usrn), ("uprn", site and site.uprn)) if v})
    if c.issued:
        extras["issued"] = c.issued.isoformat()
    pkg: Json = {
        "name": ckan_name(f"{g.id}-street-sensors"),
        "title": title or c.title or f"Street sensors: {g.name or g.id}",
        "notes": c.description or g.description or f"Open data from street sensor gateway {g.id} in {g.borough}.",
        "license_id": CKAN_LICENCES.get(licence, "other-open"),
        "owner_org": ckan_name(g.borough),
        "organization": {"name": ckan_name(g.borough), "title": publisher_name(cfg)},
        "tags": [{"name": t} for t in tags],
        "extras": [{"key": k, "value": v} for k, v in sorted(extras.items())],
        "resources": resources,
    }  # fmt: skip
    if c.contact is not None:
        pkg["maintainer"] = c.contact.name
        if c.contact.email:
            pkg["maintainer_email"] = c.contact.email
    if c.homepage:
        pkg["url"] = c.homepage
    return pkg
