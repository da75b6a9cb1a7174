"""Plant identifiers in every device profile's payloads, run the real gateway (real Mosquitto,
real VictoriaMetrics, file store), then search every output byte for them: the file store, an
MQTT capture of the city feed, the TSDB export, the outbox database, the logs and the metrics.
Raw form, case and separator variants, and unsalted SHA-256/MD5 of each: zero hits."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import time
import urllib.request

import aiomqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.ops.logs import setup_logging
from gateway.pipeline import Pipeline
from tests.conftest import Mosquitto, VictoriaMetrics
from tests.integration.test_mqtt_ingest import wait_for

pytestmark = pytest.mark.integration

hexbyte = st.integers(0, 255)
macs = st.lists(hexbyte, min_size=6, max_size=6).map(lambda o: ":".join(f"{b:02x}" for b in o))
id_tags = st.lists(hexbyte, min_size=7, max_size=7).map(lambda o: "".join(f"{b:02X}" for b in o))
letters = st.sampled_from("ABCDEFGHJKLMNOPRSTUVWXYZ")
plates = st.tuples(letters, letters, st.integers(10, 99), letters, letters, letters).map(
    lambda t: f"{t[0]}{t[1]}{t[2]} {t[3]}{t[4]}{t[5]}")
emails = st.tuples(st.sampled_from(["alex", "sam", "jo", "priya"]), st.integers(100, 99999)).map(
    lambda t: f"{t[0]}.{t[1]}@example.org")
phones = st.integers(100000000, 999999999).map(lambda n: f"+447{n}")
# A name has no identifier shape: only the vocabularies (default deny for free text) stop it.
names = st.tuples(st.sampled_from(["Priya", "Oluwaseun", "Siobhan", "Tomasz"]),
                  st.sampled_from(["Ramanathan", "Adeyemi", "Gallagher", "Kowalczyk"])).map(" ".join)
# An OCPP 2.0.1 transactionId: a string of up to 36 characters, often a UUID.
tx_ids = st.uuids().map(str)
identities = st.fixed_dictionaries({"mac": macs, "mac2": macs, "tag": id_tags, "plate": plates,
                                    "email": emails, "phone": phones, "name": names,
                                    "txid": tx_ids})  # fmt: skip

SENSORS = """\
  - {id: ev-1, driver: openevse, mqtt: {}, options: {base_topic: openevse-55ad}}
  - {id: ocpp-1, driver: ocpp16j, mqtt: {topic: 'ocpp/CB-1/in'}}
  - {id: ocpp-2, driver: ocpp201j, mqtt: {topic: 'ocpp/CS-2/in'}}
  - {id: cam-1, driver: axis_object_analytics, mqtt: {}}
  - {id: sniff-1, driver: wifi_probe_sniffer, mqtt: {topic: 'footfall/sniffer-1/probes'}}
  - {id: pax-1, driver: paxcounter, mqtt: {topic: 'paxout/#'}}
  - {id: lora-1, driver: chirpstack, mqtt: {}, options: {dev_eui: 70b3d57ed0051a2b, ports: {1: {codec: paxcounter_packed}}, decoded: {ports: [2], fields: [{path: pm25, property: particulates, unit: ug/m3}]}}}
  - {id: lora-2, driver: thethingsstack, mqtt: {}, options: {dev_eui: 70B3D57ED0061C2E, decoded: {fields: [{path: pm2_5, property: pm2_5, unit: ug/m3}]}}}
  - {id: gj-1, driver: generic_json, mqtt: {topic: 'sensors/aq-node-7/json'}, options: {fields: [{path: data.pm25, property: pm2_5, unit: ug/m3}, {path: data.state, property: state, type: category, allowed: [ok, fault], optional: true}]}}
  - {id: senml-1, driver: senml, mqtt: {topic: 'senml/weather-1'}, options: {fields: [{suffix: ':temp', property: temperature, unit: Cel}, {suffix: ':state', property: state, type: category, allowed: [ok, fault]}]}}
"""


def payloads(ids: dict[str, str]) -> list[tuple[str, str]]:
    mac, mac2, tag, plate, email, phone, name, txid = (ids[k] for k in ("mac", "mac2", "tag", "plate", "email", "phone", "name", "txid"))
    token = {"idToken": tag, "type": "ISO14443"}
    register = lambda wh, ctx: [{"timestamp": "2026-03-14T10:27:30Z", "sampledValue": [  # noqa: E731
        {"value": wh, "context": ctx, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}},
        {"value": 54, "context": ctx, "measurand": "SoC", "location": "EV", "unitOfMeasure": {"unit": "Percent"}}]}]
    probe = lambda m, r: {"mac": m, "rssi": r, "seq": 7, "ch": 6}  # noqa: E731
    return [
        ("footfall/sniffer-1/probes", json.dumps(probe(mac, -50))),
        ("footfall/sniffer-1/probes", json.dumps([probe(mac, -52), probe(mac2, -60), probe(mac.upper(), -55)])),
        ("openevse-55ad/rfid_auth", tag),
        ("openevse-55ad/rfid_input", tag),  # a card being enrolled: ignored, never logged
        ("openevse-55ad/amp", "16000"),
        ("openevse-55ad/status", "active"),
        ("openevse-55ad/status", name),  # free text in a status: only its vocabulary's words leave
        ("openevse-55ad/vehicle_owner", email),  # unknown key, must be counted and dropped
        ("openevse-55ad/config", json.dumps({"firmware": "5.1.5", "wifi_ssid": phone, "mqtt_user": email})),
        ("ocpp/CB-1/in", json.dumps([2, "a1", "StartTransaction", {"connectorId": 1, "idTag": tag, "meterStart": 1000, "timestamp": "2026-03-14T10:12:30Z"}])),
        ("ocpp/CB-1/in", json.dumps([2, "a2", "MeterValues", {"connectorId": 1, "transactionId": 5531, "meterValue": [{"timestamp": "2026-03-14T10:27:30Z", "sampledValue": [{"value": "2000", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}, {"value": "54", "measurand": "SoC", "unit": "Percent"}]}]}])),
        ("ocpp/CB-1/in", json.dumps([2, "a3", "StopTransaction", {"transactionId": 5531, "idTag": email, "meterStop": 3000, "timestamp": "2026-03-14T11:40:02Z", "reason": plate}])),
        ("ocpp/CB-1/in", json.dumps([2, "a4", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging", "info": phone}])),
        ("ocpp/CB-1/in", json.dumps([2, "a5", "StatusNotification", {"connectorId": 1, "errorCode": name, "status": name, "info": name}])),
        ("ocpp/CS-2/in", json.dumps([2, "b1", "TransactionEvent", {"eventType": "Started", "timestamp": "2026-03-14T10:12:30Z", "triggerReason": "Authorized", "seqNo": 0, "transactionInfo": {"transactionId": txid, "chargingState": "EVConnected"}, "idToken": token, "evse": {"id": 1, "connectorId": 1}, "meterValue": register(1000, "Transaction.Begin")}])),
        ("ocpp/CS-2/in", json.dumps([2, "b2", "TransactionEvent", {"eventType": "Updated", "timestamp": "2026-03-14T10:27:30Z", "triggerReason": "MeterValuePeriodic", "seqNo": 1, "transactionInfo": {"transactionId": txid, "chargingState": "Charging"}, "meterValue": register(2000, "Sample.Periodic")}])),
        ("ocpp/CS-2/in", json.dumps([2, "b3", "MeterValues", {"evseId": 1, "meterValue": register(2500, "Sample.Clock")}])),
        ("ocpp/CS-2/in", json.dumps([2, "b4", "TransactionEvent", {"eventType": "Ended", "timestamp": "2026-03-14T11:40:02Z", "triggerReason": "StopAuthorized", "seqNo": 2, "transactionInfo": {"transactionId": txid, "stoppedReason": plate}, "idToken": {"idToken": email, "type": "eMAID"}, "meterValue": register(3000, "Transaction.End")}])),
        ("ocpp/CS-2/in", json.dumps([3, "b4", {"idTokenInfo": {"status": "Accepted", "personalMessage": {"format": "UTF8", "content": name}}}])),
        (f"axis/{mac.replace(':', '').upper()}/event/CameraApplicationPlatform/ObjectAnalytics/Device1Scenario1",
         json.dumps({"topic": "axis:x", "timestamp": 1741946405123, "serial": mac.replace(":", "").upper(),
                     "message": {"source": {}, "key": {}, "data": {"scenario": plate, "reason": "human", "total": "3", "totalHuman": "3", "operator": email}}})),
        (f"axis/{mac.replace(':', '').upper()}/event/tns1:Device/tnsaxis:IO/VirtualInput",
         json.dumps({"topic": "onvif:Device/axis:IO/VirtualInput", "serial": mac, "message": {"data": {"active": "1", "who": phone}}})),
        ("paxout", f"paxcounter_{mac2}"),  # the hello on connect: ignored, never logged
        ("paxout/1", base64.b64encode(bytes([23, 0, 41, 0])).decode()),
        ("paxout/1", phone),  # not base64: an error, logged without the value
        chirpstack_up(ids, f_port=1, data=bytes([42, 0]), obj=None, f_cnt=1),
        chirpstack_up(ids, f_port=2, data=b"\x01", obj={"pm25": 9.5, "owner": email, "badge": tag}, f_cnt=2),
        chirpstack_up(ids, f_port=2, data=b"\x01", obj={"pm25": 9.5}, f_cnt=2),  # a duplicate
        tts_up(ids),
        ("sensors/aq-node-7/json", json.dumps({"data": {"pm25": 9.5, "plate": plate}, "badge": tag, "contact": email})),
        ("sensors/aq-node-7/json", json.dumps({"data": {"pm25": 9.6, "state": "ok"}})),
        ("sensors/aq-node-7/json", json.dumps({"data": {"pm25": 9.7, "state": name}})),
        ("senml/weather-1", json.dumps([{"bn": f"urn:dev:mac:{mac.replace(':', '')}:", "n": "temp", "u": "Cel", "v": 21.5},
                                        {"n": "owner", "vs": email}, {"n": "state", "vs": name}])),
    ]  # fmt: skip


def chirpstack_up(ids: dict[str, str], *, f_port: int, data: bytes, obj: dict[str, object] | None,
                  f_cnt: int) -> tuple[str, str]:  # fmt: skip
    """A ChirpStack v4 uplink (JSON marshaler) with identifiers planted where the envelope has
    free text and radio metadata: device name, tags, the gateway's id and position."""
    app = "17c82e96-be03-4f38-aef3-f83d48582d97"
    body: dict[str, object] = {
        "deduplicationId": f"3ac7e3c4-4401-4b8d-9386-{f_cnt:012x}", "time": "2026-03-14T10:12:30.5+00:00",
        "deviceInfo": {"applicationId": app, "applicationName": ids["email"], "deviceName": ids["plate"],
                       "devEui": "70b3d57ed0051a2b", "tags": {"owner": ids["phone"], "card": ids["tag"]}},
        "devAddr": "00189440", "fCnt": f_cnt, "fPort": f_port, "data": base64.b64encode(data).decode(),
        "rxInfo": [{"gatewayId": ids["mac"].replace(":", "") + "fffe", "rssi": -97, "snr": 7.25,
                    "location": {"latitude": 51.5421, "longitude": -0.1426}, "metadata": {"contact": ids["email"]}}],
        "txInfo": {"frequency": 867100000},
    }
    if obj is not None:
        body["object"] = obj
    return f"application/{app}/device/70b3d57ed0051a2b/event/up", json.dumps(body)


def tts_up(ids: dict[str, str]) -> tuple[str, str]:
    body = {
        "end_device_ids": {"device_id": "eui-70b3d57ed0061c2e", "application_ids": {"application_id": "aq"},
                           "dev_eui": "70B3D57ED0061C2E", "dev_addr": "260B5A7C"},
        "correlation_ids": ["as:up:01HXYZ"], "received_at": "2026-03-14T10:12:30.5Z",
        "uplink_message": {"f_port": 2, "f_cnt": 9, "frm_payload": "AAE=", "session_key_id": "AXA5",
                           "decoded_payload": {"pm2_5": 8.5, "owner": ids["email"], "mac": ids["mac2"]},
                           "rx_metadata": [{"gateway_ids": {"gateway_id": ids["plate"].replace(" ", "-").lower(),
                                                            "eui": ids["mac2"].replace(":", "") + "fffe"},
                                            "rssi": -35, "location": {"latitude": 51.5, "longitude": -0.1}}]},
    }
    return "v3/aq@camden/devices/eui-70b3d57ed0061c2e/up", json.dumps(body)


def variants(value: str) -> set[str]:
    """Raw, case and separator variants, and their unsalted SHA-256 and MD5 digests."""
    forms = {value, value.lower(), value.upper()}
    for sep in (":", "-", ".", " ", ""):
        for f in list(forms):
            forms.add(f.replace(":", sep).replace(" ", sep))
    if len(value.replace(":", "")) == 12:  # a MAC: Cisco dotted notation too
        bare = value.replace(":", "").lower()
        forms |= {f"{bare[0:4]}.{bare[4:8]}.{bare[8:12]}", f"{bare[0:4]}.{bare[4:8]}.{bare[8:12]}".upper()}
    digests = set()
    for f in forms:
        digests.add(hashlib.sha256(f.encode()).hexdigest())
        digests.add(hashlib.md5(f.encode()).hexdigest())
    return {f for f in forms if len(f) >= 6} | digests


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=identities)
def test_planted_identifiers_never_leave_in_any_output(
    ids: dict[str, str], tmp_path_factory: pytest.TempPathFactory, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> None:
    tmp = tmp_path_factory.mktemp("leak")
    data = tmp / "data"
    cfg = parse_config(f"""
gateway: {{id: camden-lc-0423, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{data}'}}
sensors:
{SENSORS}
inputs: {{mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, client_id: leak-{tmp.name}}}}}
privacy: {{window: 1m, min_count: 3}}
sinks:
  file: {{path: observations.jsonl}}
  influxdb: {{url: '{victoria.url}', org: london, bucket: street, token: not-a-secret}}
  mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, tls: false, client_id: leak-out-{tmp.name}}}
ops: {{http: null}}
""", "leak.yaml", {})
    logs = io.StringIO()
    setup_logging("debug", stream=logs)
    captured: list[bytes] = []
    sent = payloads(ids)

    async def scenario() -> Pipeline:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
            await sub.subscribe("v1.1/#", qos=1)
            await sub.subscribe("street-gateway/#", qos=1)

            async def collect() -> None:
                async for m in sub.messages:
                    captured.append(str(m.topic).encode() + b" " + bytes(m.payload))  # type: ignore[arg-type]

            collector = asyncio.create_task(collect())
            p = Pipeline(cfg)
            await p.start()
            await wait_for(lambda: getattr(p, "mqtt_source", None) is not None and p.mqtt_source.connected, what="subscription")
            await asyncio.sleep(0.3)
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as dev:
                for topic, payload in sent:
                    await dev.publish(topic, payload, qos=1)
            total = p.metrics.counter("gateway_mqtt_messages_total", "")
            await wait_for(lambda: total.total() >= len(sent), what="every message received")
            await wait_for(lambda: p.queue.empty(), what="committed")
            await wait_for(lambda: all(p.stats.delivered.get(k.name, 0) >= p.stats.committed for k in p.sinks),
                           what="delivered to every sink")  # fmt: skip
            await p.stop()
            await asyncio.sleep(0.5)
            collector.cancel()
            return p

    p = asyncio.run(scenario())
    logging.getLogger().handlers.clear()
    outputs: dict[str, bytes] = {
        "logs": logs.getvalue().encode(),
        "metrics": p.metrics.render().encode(),
        "mqtt capture": b"\n".join(captured),
    }
    for f in sorted(data.rglob("*")):
        if f.is_file():
            outputs[f"data dir: {f.name}"] = f.read_bytes()
    q = "match[]=%7B__name__!%3D%22%22%7D&start=0"
    deadline = time.monotonic() + 20
    while True:  # VictoriaMetrics ingests asynchronously, even after a forced flush
        victoria.flush()
        export = urllib.request.urlopen(f"{victoria.url}/api/v1/export?{q}", timeout=10).read()
        if b"pm2_5_value" in export or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    outputs["tsdb export"] = export
    assert outputs["mqtt capture"], "the capture must see the city feed, or the search proves nothing"
    assert b"Observations" in outputs["mqtt capture"]
    assert (data / "observations.jsonl").stat().st_size > 0
    assert b"pm2_5_value" in outputs["tsdb export"] and b"gateway started" in outputs["logs"]
    # a declared word does leave (so the search below could find a category value), and the
    # planted name was stopped and counted, not lost unseen
    assert b'"result":"ok"' in (data / "observations.jsonl").read_bytes()
    metrics = outputs["metrics"].decode()
    assert 'gateway_mqtt_bad_messages_total{reason="not_in_vocabulary",sensor="gj-1"}' in metrics
    assert 'gateway_mqtt_bad_messages_total{reason="not_in_vocabulary",sensor="senml-1"}' in metrics
    assert 'gateway_mqtt_bad_messages_total{reason="bad_value",sensor="ev-1"}' in metrics  # not a firmware word
    # the 2.0.1 session was read, idToken and transactionId with it: two markers, four meter readings
    assert 'gateway_readings_total{sensor="ocpp-2"} 6' in metrics
    assert 'sensor="ocpp-2"' not in metrics.split("gateway_mqtt_bad_messages_total", 1)[-1].split("# HELP", 1)[0]
    hits: list[str] = []
    for kind, value in ids.items():
        for form in variants(value):
            needle = form.encode()
            for where, blob in outputs.items():
                if needle in blob or needle.lower() in blob.lower():
                    hits.append(f"{kind} as {form!r} in {where}")
    assert not hits, hits[:10]


def test_the_search_would_find_a_leak() -> None:
    """Guard against a search that cannot fail: a planted value is found in its variants."""
    mac = "3c:22:fb:12:34:56"
    v = variants(mac)
    assert "3C-22-FB-12-34-56" in v and "3c22fb123456" in v and "3c22.fb12.3456" in v
    assert hashlib.sha256(b"3c:22:fb:12:34:56").hexdigest() in v
    assert any(hashlib.md5(b"3c22fb123456").hexdigest() == d for d in v)


