"""The city feed as a SensorThings client sees it: a real Mosquitto, a subscriber on `v1.1/#`,
every entity and Observation validated against the schemas written from OGC 18-088."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from jsonschema import Draft202012Validator

from gateway.config import parse_config
from gateway.pipeline import Pipeline
from tests.conftest import Mosquitto
from tests.integration.test_mqtt_ingest import pax_frame, wait_for

pytestmark = pytest.mark.integration
SCHEMAS = Path(__file__).parent.parent / "schemas"
COLLECTIONS = {"Things": "Thing", "Locations": "Location", "Sensors": "Sensor",
               "ObservedProperties": "ObservedProperty", "Datastreams": "Datastream"}  # fmt: skip


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / f"{name}.json").read_text()))


def test_city_feed_carries_valid_entities_and_observations(tmp_path: Path, mosquitto: Mosquitto) -> None:
    cfg_text = f"""
gateway: {{id: camden-lc-0423, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{tmp_path / "data"}'}}
sensors:
  - {{id: pax-1, driver: paxcounter, mqtt: {{topic: paxout/+}}}}
  - {{id: ev-hub-1, driver: ocpp16j, mqtt: {{topic: ocpp/CB-1/in}}}}
inputs: {{mqtt: {{host: 127.0.0.1, port: {mosquitto.port}}}}}
privacy: {{window: 1m, min_count: 3}}
sinks:
  mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, tls: false}}
ops: {{http: null}}
"""
    received: list[tuple[str, Any, bool]] = []

    async def scenario() -> Pipeline:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
            await sub.subscribe("v1.1/#", qos=1)

            async def collect() -> None:
                async for m in sub.messages:
                    received.append((str(m.topic), json.loads(m.payload), m.retain))  # type: ignore[arg-type]

            collector = asyncio.create_task(collect())
            p = Pipeline(parse_config(cfg_text, "t.yaml", {}))
            await p.start()
            await wait_for(lambda: getattr(p, "mqtt_source", None) is not None and p.mqtt_source.connected, what="subscription")
            await asyncio.sleep(0.3)
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as dev:
                for i in range(5):
                    await dev.publish("paxout/1", pax_frame(20 + i, 30 + i), qos=1)
                await dev.publish("ocpp/CB-1/in", '[2,"1","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Charging"}]', qos=1)
            await wait_for(lambda: sum(1 for t, _, _ in received if t.endswith("/Observations")) >= 11, what="observations on the feed")
            await p.stop()
            collector.cancel()
            return p

    async def retained() -> list[tuple[str, bool]]:
        """A consumer that connects later still finds every entity, retained."""
        got: list[tuple[str, bool]] = []
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as late:
            await late.subscribe("v1.1/+", qos=1)
            try:
                async with asyncio.timeout(1.5):
                    async for m in late.messages:
                        got.append((str(m.topic), m.retain))
            except TimeoutError:
                pass
        return got

    p = asyncio.run(scenario())
    late = asyncio.run(retained())
    assert len(late) == len({t for t, b, _ in received if not t.endswith("/Observations")})
    assert all(flag for _, flag in late)
    entities = [(t, b) for t, b, _ in received if not t.endswith("/Observations") and "(" in t]
    observations = [(t, b) for t, b, _ in received if t.endswith("/Observations")]
    seen_collections = {t.split("/")[1].split("(")[0] for t, _ in entities}
    assert seen_collections == set(COLLECTIONS)
    for topic, body in entities:
        name = COLLECTIONS[topic.split("/")[1].split("(")[0]]
        errs = [e.message for e in validator(name).iter_errors(body)]
        assert not errs, f"{topic}: {errs}"
        assert topic.endswith(f"({body['@iot.id']})")
    datastream_ids = {b["@iot.id"] for t, b in entities if t.startswith("v1.1/Datastreams(")}
    assert datastream_ids == set(p.plan.datastreams)
    obs_validator = validator("Observation")
    for topic, body in observations:
        errs = [e.message for e in obs_validator.iter_errors(body)]
        assert not errs, f"{topic}: {errs}"
        ds = body["Datastream"]["@iot.id"]
        assert topic == f"v1.1/Datastreams({ds})/Observations" and ds in datastream_ids
    status = p.plan.sensors["ev-hub-1"].datastreams["connector_status"].id
    assert any(b["result"] == "CHARGING" for t, b in observations if b["Datastream"]["@iot.id"] == status)


LINK_ORDER = ["Locations", "Things", "Sensors", "ObservedProperties", "Datastreams"]


def test_three_feeds_in_three_formats_each_pass_their_official_validator(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """One gateway, three `mqtt` sink instances on a real Mosquitto: SensorThings (entities
    retained, published in link order), SenML (one pack per sensor, RFC 8428 CDDL) and NGSI-LD
    (Smart Data Models schemas, every term resolvable in the published @contexts)."""
    from gateway.model import Reading
    from tests.validators import sdm_errors, senml_errors, senml_validator, unresolved_terms

    port = mosquitto.port
    cfg_text = f"""
gateway: {{id: camden-lc-0423, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{tmp_path / "data"}'}}
sensors:
  - {{id: pm-north, driver: pms5003, serial: {{port: '{tmp_path / "no-such-port"}'}}}}
  - {{id: ev-hub-1, driver: ocpp16j, mqtt: {{topic: ocpp/CB-1/in}}}}
inputs: {{mqtt: {{host: 127.0.0.1, port: {port}}}}}
privacy: {{window: 1m, min_count: 3}}
sinks:
  st: {{type: mqtt, host: 127.0.0.1, port: {port}, tls: false}}
  sm: {{type: mqtt, host: 127.0.0.1, port: {port}, tls: false, format: senml}}
  ng: {{type: mqtt, host: 127.0.0.1, port: {port}, tls: false, format: ngsi-ld}}
ops: {{http: null}}
"""
    received: list[tuple[str, Any]] = []

    async def scenario() -> Pipeline:
        async with aiomqtt.Client("127.0.0.1", port) as sub:
            for t in ("v1.1/#", "senml/#", "ngsi-ld/#"):
                await sub.subscribe(t, qos=1)

            async def collect() -> None:
                async for m in sub.messages:
                    received.append((str(m.topic), json.loads(m.payload)))  # type: ignore[arg-type]

            collector = asyncio.create_task(collect())
            p = Pipeline(parse_config(cfg_text, "t.yaml", {}))
            await p.start()
            await wait_for(lambda: getattr(p, "mqtt_source", None) is not None and p.mqtt_source.connected, what="subscription")
            for i in range(3):
                await p.submit(Reading("pm-north", 1_795_000_000.0 + i, {"pm1_0": 3 + i, "pm2_5": 7.5 + i, "pm10": 11 + i}))
            async with aiomqtt.Client("127.0.0.1", port) as dev:
                await dev.publish("ocpp/CB-1/in", '[2,"1","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Charging"}]', qos=1)

            def count(prefix: str) -> int:
                return sum(1 for t, _ in received if t.startswith(prefix))

            await wait_for(lambda: count("ngsi-ld/") >= 4 and count("senml/") >= 2 and
                           sum(1 for t, _ in received if t.endswith("/Observations")) >= 10, what="all three feeds")  # fmt: skip
            await p.stop()
            collector.cancel()
            return p

    asyncio.run(scenario())
    # SensorThings: entities in link order (referenced before referencing), then Observations
    entities = [t.split("/")[1].split("(")[0] for t, _ in received if t.startswith("v1.1/") and not t.endswith("/Observations")]
    assert entities and [LINK_ORDER.index(c) for c in entities] == sorted(LINK_ORDER.index(c) for c in entities)
    assert set(entities) == set(LINK_ORDER)
    obs_validator = validator("Observation")
    for t, body in received:
        if t.endswith("/Observations"):
            assert list(obs_validator.iter_errors(body)) == [], t
    # SenML: one pack per sensor per batch, on <prefix>/<gateway>/<sensor>
    v = senml_validator()
    packs = [(t, b) for t, b in received if t.startswith("senml/")]
    assert {t for t, _ in packs} == {"senml/camden-lc-0423/pm-north", "senml/camden-lc-0423/ev-hub-1"}
    for t, pack in packs:
        assert senml_errors(pack, v) == [], t
        assert pack[0]["bn"] == f"urn:dev:street-gateway:camden-lc-0423:{t.rsplit('/', 1)[1]}:"
    pm_values = sorted(r["v"] for t, pack in packs if t.endswith("pm-north") for r in pack if r["n"] == "pm2_5")
    assert pm_values == [7.5, 8.5, 9.5]
    # NGSI-LD: Smart Data Models entities, every term defined by the @contexts they name
    ngsi = [(t, b) for t, b in received if t.startswith("ngsi-ld/")]
    assert {b["type"] for _, b in ngsi} == {"AirQualityObserved", "EVChargingStation"}
    for t, entity in ngsi:
        assert sdm_errors(entity) == [] and unresolved_terms(entity) == [], t
    ev = next(b for _, b in ngsi if b["type"] == "EVChargingStation")
    assert ev["ocpiStatus"]["value"] == "CHARGING" and ev["status"]["value"] == "full"
