"""SensorThings 1.1 entities and Observations validate against schemas written from OGC 18-088."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from gateway.config import Config, parse_config
from gateway.model import Observation, Reading
from gateway.plan import SitePlan, build_plan
from gateway.privacy import location as _loc
from gateway.privacy.stage import PrivacyStage
from gateway.standards.sensorthings import (
    canonical_json,
    config_fingerprint,
    entity_messages,
    observation_topic,
)


def snap_to_grid(lat: float, lon: float, grid: float) -> tuple[float, float]:
    """(lat, lon) order, as these tests read."""
    lon2, lat2 = _loc.snap_to_grid(lon, lat, grid)
    return lat2, lon2


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    return _loc.distance_m((lon1, lat1), (lon2, lat2))

SCHEMAS = Path(__file__).parent.parent / "schemas"

SITE = """
gateway:
  id: {gw}
  borough: camden
  name: Camden High Street, lamp column 423
  usrn: "20500123"
  location: {{lat: 51.5390, lon: -0.1426}}
sensors:
  - {{id: pm-north, driver: pms5003, serial: {{port: /dev/null}}}}
  - {{id: co2-1, driver: senseair_s8, serial: {{port: /dev/ttyUSB1}}}}
  - {{id: meter-1, driver: eastron_sdm, serial: {{port: /dev/ttyUSB2}}}}
  - {{id: footfall-1, driver: wifi_probe_sniffer, mqtt: {{topic: footfall/1/probes}}}}
  - {{id: ev-1, driver: openevse, mqtt: {{topic: openevse/+}}}}
  - {{id: ev-2, driver: ocpp16j, mqtt: {{topic: ocpp/cp-1/#}}}}
  - {{id: people-1, driver: axis_object_analytics, mqtt: {{topic: axis/cam-1/#}}}}
  - {{id: pax-1, driver: paxcounter, mqtt: {{topic: pax/1}}}}
inputs: {{mqtt: {{host: 127.0.0.1}}}}
privacy: {{window: 15m, min_count: 10, location_grid_m: {grid}}}
sinks: {{file: {{path: observations.jsonl}}}}
"""


def site(gw: str = "camden-lc-0423", grid: float = 100) -> tuple[Config, SitePlan]:
    cfg = parse_config(SITE.format(gw=gw, grid=grid), "site.yaml", env={})
    return cfg, build_plan(cfg)


@functools.cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


COLLECTION_SCHEMA = {
    "Things": "Thing",
    "Locations": "Location",
    "Sensors": "Sensor",
    "ObservedProperties": "ObservedProperty",
    "Datastreams": "Datastream",
}


def errors(name: str, body: Any) -> list[str]:
    return [e.message for e in validator(name).iter_errors(body)]


# --------------------------------------------------------------------------- entities


def test_every_entity_validates_against_its_schema() -> None:
    _, plan = site()
    messages = entity_messages(plan)
    seen = {c: 0 for c in COLLECTION_SCHEMA}
    for topic, body in messages:
        collection = topic.split("/")[1].split("(")[0]
        seen[collection] += 1
        assert errors(COLLECTION_SCHEMA[collection], body) == [], topic
        assert topic == f"v1.1/{collection}({body['@iot.id']})"
    assert seen["Things"] == 1 and seen["Locations"] == 1
    assert seen["Sensors"] == len(plan.sensors)
    assert seen["Datastreams"] == len(plan.datastreams)


def test_schemas_reject_entities_missing_mandatory_properties() -> None:
    _, plan = site()
    for topic, body in entity_messages(plan):
        collection = topic.split("/")[1].split("(")[0]
        schema = COLLECTION_SCHEMA[collection]
        for key in validator(schema).schema["required"]:
            broken = {k: v for k, v in body.items() if k != key}
            assert errors(schema, broken), f"{schema} without {key} must not validate"


def test_datastreams_link_to_published_entities_and_carry_plan_ids() -> None:
    _, plan = site()
    messages = dict(entity_messages(plan))
    ids = {t.split("/")[1] for t in messages}
    for topic, body in messages.items():
        if "/Datastreams(" not in topic:
            continue
        assert body["@iot.id"] in plan.datastreams
        assert f"Things({body['Thing']['@iot.id']})" in ids
        assert f"Sensors({body['Sensor']['@iot.id']})" in ids
        assert f"ObservedProperties({body['ObservedProperty']['@iot.id']})" in ids
    assert "usrn" not in messages[f"v1.1/Things({plan.thing_id})"]["properties"], "address-level: opt-in only"


def test_category_and_truth_streams_have_null_units_and_measurements_have_ucum() -> None:
    _, plan = site()
    by_prop = {(b["properties"]["sensorId"], b["properties"]["property"]): b
               for t, b in entity_messages(plan) if "/Datastreams(" in t}  # fmt: skip
    status = by_prop[("ev-1", "status")]
    assert status["unitOfMeasurement"] == {"name": None, "symbol": None, "definition": None}
    assert status["observationType"].endswith("OM_CategoryObservation")
    assert by_prop[("ev-1", "vehicle_connected")]["observationType"].endswith("OM_TruthObservation")
    pm = by_prop[("pm-north", "pm2_5")]
    assert pm["unitOfMeasurement"]["symbol"] == "µg/m³"
    assert pm["unitOfMeasurement"]["definition"].startswith("http://unitsofmeasure.org/")
    footfall = by_prop[("footfall-1", "footfall")]
    assert footfall["observationType"].endswith("OM_CountObservation")
    assert footfall["properties"]["period"] == "PT15M"


def test_air_quality_properties_use_the_eea_pollutant_vocabulary() -> None:
    _, plan = site()
    defs = {b["name"]: b["definition"] for t, b in entity_messages(plan) if "ObservedProperties(" in t}
    assert defs["PM2.5"] == "http://dd.eionet.europa.eu/vocabulary/aq/pollutant/6001"
    assert defs["PM10"] == "http://dd.eionet.europa.eu/vocabulary/aq/pollutant/5"
    assert defs["CO2"] == "http://dd.eionet.europa.eu/vocabulary/aq/pollutant/71"


def test_no_personal_field_becomes_a_datastream_or_property() -> None:
    _, plan = site()
    text = json.dumps(entity_messages(plan))
    for sp in plan.sensors.values():
        for f in sp.catalogue.personal_fields:
            assert all(ds.property != f.key for ds in sp.datastreams.values())
    assert '"mac"' not in text and "idTag" not in text


# --------------------------------------------------------------------------- ids


def test_ids_are_stable_for_the_same_config() -> None:
    a, b = entity_messages(site()[1]), entity_messages(site()[1])
    assert [t for t, _ in a] == [t for t, _ in b]
    assert config_fingerprint(a) == config_fingerprint(b)


def test_ids_differ_for_another_gateway_but_shared_phenomena_keep_theirs() -> None:
    a = dict(entity_messages(site("camden-lc-0423")[1]))
    b = dict(entity_messages(site("camden-lc-0424")[1]))
    kinds = ("Things(", "Locations(", "Sensors(", "Datastreams(")
    ta = {t for t in a if any(k in t for k in kinds)}
    tb = {t for t in b if any(k in t for k in kinds)}
    assert ta and not ta & tb
    pm25_a = [t for t, v in a.items() if v.get("name") == "PM2.5"]
    pm25_b = [t for t, v in b.items() if v.get("name") == "PM2.5"]
    assert pm25_a == pm25_b  # city-wide ObservedProperty for a shared phenomenon


def test_all_entity_ids_are_distinct_integers() -> None:
    ids = [b["@iot.id"] for _, b in entity_messages(site()[1])]
    assert all(isinstance(i, int) and 10**15 <= i < 10**16 for i in ids)
    assert len(ids) == len(set(ids))


def test_fingerprint_changes_with_the_config() -> None:
    assert config_fingerprint(entity_messages(site(grid=100)[1])) != config_fingerprint(
        entity_messages(site(grid=250)[1])
    )


def test_the_fingerprint_is_the_sha256_of_the_whole_lists_canonical_json() -> None:
    """Hashed a message at a time (not the whole list's JSON at once), the digest is still that
    of the whole list's canonical JSON: a gateway upgraded with fingerprint files on disk does
    not republish its retained entities, and any change of a message still changes it."""
    import hashlib

    from hypothesis import given, settings
    from hypothesis import strategies as st

    def whole(messages: list[object]) -> str:
        return hashlib.sha256(canonical_json(list(messages))).hexdigest()

    for grid in (100, 250):
        messages = entity_messages(site(grid=grid)[1])
        assert len(messages) > 3
        assert config_fingerprint(messages) == whole(messages)
        assert config_fingerprint(iter(messages)) == whole(messages)
    assert config_fingerprint([]) == whole([])
    mapping = {"b": [1, "x"], "a": {"é": None}}
    assert config_fingerprint(mapping) == hashlib.sha256(canonical_json(mapping)).hexdigest()

    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    values = st.recursive(scalars, lambda v: st.lists(v, max_size=3) | st.dictionaries(st.text(), v, max_size=3), max_leaves=10)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(st.text(), values), max_size=6))
    def agrees(messages: list[tuple[str, object]]) -> None:
        assert config_fingerprint(messages) == whole(messages)

    agrees()


def test_topics_use_the_configured_prefix() -> None:
    _, plan = site()
    topics = [t for t, _ in entity_messages(plan, prefix="city/v1.1/")]
    assert all(t.startswith("city/v1.1/") and "//" not in t for t in topics)
    assert observation_topic("v1.1", 1234567890123456) == "v1.1/Datastreams(1234567890123456)/Observations"


# --------------------------------------------------------------------------- location


def test_location_is_snapped_to_the_privacy_grid() -> None:
    _, plan = site(grid=100)
    loc = dict(entity_messages(plan))
    body = next(v for t, v in loc.items() if "/Locations(" in t)
    lon, lat = body["location"]["coordinates"]
    assert (lat, lon) != (51.5390, -0.1426)
    assert (lat, lon) == snap_to_grid(51.5390, -0.1426, 100)
    assert distance_m(51.5390, -0.1426, lat, lon) <= 71


@settings(max_examples=200, deadline=None)
@given(st.floats(-80, 80), st.floats(-179.9, 179.9), st.sampled_from([10.0, 100.0, 250.0, 1000.0]))
def test_snapping_moves_a_point_by_at_most_half_the_cell_diagonal(lat: float, lon: float, grid: float) -> None:
    slat, slon = snap_to_grid(lat, lon, grid)
    assert distance_m(lat, lon, slat, slon) <= grid * math.sqrt(2) / 2 * 1.01 + 0.2
    assert snap_to_grid(slat, slon, grid) == (slat, slon)  # idempotent


def test_points_ten_metres_apart_in_one_cell_snap_together() -> None:
    clat, clon = snap_to_grid(51.5390, -0.1426, 100)
    dlat = 5 / 111_195  # 5 m either side of the cell centre
    a = snap_to_grid(clat - dlat, clon, 100)
    b = snap_to_grid(clat + dlat, clon, 100)
    assert distance_m(clat - dlat, clon, clat + dlat, clon) == pytest.approx(10, abs=0.05)
    assert a == b == (clat, clon)


def test_zero_grid_publishes_the_point_as_given() -> None:
    assert snap_to_grid(51.5390, -0.1426, 0) == (51.539, -0.1426)


# --------------------------------------------------------------------------- observations


def produced_observations() -> list[Observation]:
    """Observations as the privacy stage makes them: instants, intervals, suppressed counts,
    categories, truths, partial windows."""
    _, plan = site()
    t0 = 1_790_000_100.0  # inside a window, so the first window is partial
    stage = PrivacyStage(plan, key_factory=lambda: b"k" * 32, salt_rotation_s=86400, started_at=t0)
    out: list[Observation] = []
    out += stage.process(Reading("pm-north", t0, {"pm1_0": 3, "pm2_5": 7.25, "pm10": 12}), t0)
    out += stage.process(Reading("co2-1", t0, {"co2": 612}), t0)
    out += stage.process(Reading("meter-1", t0, {"energy_total": 1234.5, "power": 230.0}), t0)
    out += stage.process(Reading("ev-1", t0, {"status": "CHARGING", "vehicle_connected": True,
                                              "energy_increment": 0.25}), t0)  # fmt: skip
    out += stage.process(Reading("ev-2", t0, {"connector_status": "CHARGING", "connector_id": "1"}), t0)
    out += stage.process(Reading("pm-north", t0 + 1, {"pm2_5": 2000.0}), t0 + 1)  # out_of_range
    for i in range(3):  # 3 < min_count: published suppressed
        out += stage.process(Reading("footfall-1", t0 + i, {"mac": f"02:00:00:00:00:0{i}"}), t0 + i)
    out += stage.due(t0 + 3600)
    for i in range(12):  # a full window above min_count
        t = t0 + 3600 + i
        out += stage.process(Reading("footfall-1", t, {"mac": f"02:00:00:00:01:{i:02x}"}), t)
    out += stage.drain(t0 + 3700)
    return out


def test_every_observation_validates_and_covers_every_shape() -> None:
    obs = produced_observations()
    bodies = [o.sensorthings() for o in obs]
    for body in bodies:
        assert errors("Observation", body) == [], body
    assert any("/" in str(b["phenomenonTime"]) for b in bodies)  # interval
    assert any("/" not in str(b["phenomenonTime"]) for b in bodies)  # instant
    assert any(b["result"] is None for b in bodies)  # suppressed
    assert any(isinstance(b["result"], str) for b in bodies)  # category
    assert any(isinstance(b["result"], bool) for b in bodies)  # truth
    assert any(b.get("parameters", {}).get("suppressed") for b in bodies)  # type: ignore[union-attr]


def test_every_observation_references_a_published_datastream() -> None:
    _, plan = site()
    published = {t for t, _ in entity_messages(plan)}
    for o in produced_observations():
        assert f"v1.1/Datastreams({o.datastream_id})" in published
        assert observation_topic("v1.1", o.datastream_id).startswith(f"v1.1/Datastreams({o.datastream_id})")


def test_observation_schema_rejects_malformed_times() -> None:
    good = Observation(1234567890123456, "s", "p", 1.0, 2.0, 3).sensorthings()
    assert errors("Observation", good) == []
    for bad in ("yesterday", "2026-01-01", "2026-01-01T00:00:00Z/"):
        assert errors("Observation", {**good, "phenomenonTime": bad})
    assert errors("Observation", {k: v for k, v in good.items() if k != "result"})
