"""LoRaWAN end to end through a real Mosquitto: ChirpStack v4 uplinks (built with ChirpStack's own
message classes, marshalled as its JSON marshaler does) and The Things Stack v3 uplinks (in the
shape of its documentation) for a Paxcounter, packed and Cayenne LPP (frames from the firmware's
own encoder, tests/data/firmware/paxcounter.json), and for an air-quality node whose server
decodes the payload, become the right Observations. Every uplink arrives twice, as two LoRa
gateways and two server instances heard it: it counts once. No DevEUI and no radio metadata
reaches any output byte: the file store, the city MQTT feed, the outbox, the logs, the metrics."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from chirpstack_api.common import common_pb2
from chirpstack_api.gw import gw_pb2
from chirpstack_api.integration import integration_pb2
from google.protobuf import json_format

from gateway.config import parse_config
from gateway.ops.logs import setup_logging
from gateway.pipeline import Pipeline
from tests.conftest import DATA, Mosquitto
from tests.integration.test_mqtt_ingest import wait_for

pytestmark = pytest.mark.integration

PAX = json.loads((DATA / "firmware" / "paxcounter.json").read_text())["formats"]
APP = "17c82e96-be03-4f38-aef3-f83d48582d97"

def _start() -> float:
    """Server receive times (the observations' phenomenonTime) run T0+1 .. T0+80 s: in the past
    (a device time more than 1 s ahead of the gateway's is not trusted), recent (nor is one more
    than 5 minutes behind) and inside one hour window: just after the last hour boundary if it
    is far enough back, else just before it."""
    now = time.time()
    t0 = float(int(now) - 92)
    boundary = (t0 + 81) // 3600 * 3600
    if boundary <= t0:
        return t0
    return boundary + 0.5 if boundary + 80.5 <= now - 1 else boundary - 81.0


T0 = _start()  # set again when the test starts (below): collection may be minutes earlier
# device -> DevEUI (ChirpStack topics carry it in lower case; TTS device ids are eui-<lower>)
EUI = {"cs-pax": "70b3d57ed0051a01", "cs-lpp": "70b3d57ed0051a02", "cs-aq": "70b3d57ed0051a03",
       "tts-pax": "70B3D57ED0051A04", "tts-lpp": "70B3D57ED0051A05", "tts-aq": "70B3D57ED0051A06"}  # fmt: skip
GATEWAYS = ("0016c001f153a14c", "0016c001f153a14d")  # two LoRa gateways hear every uplink
TTS_GATEWAYS = (("lgw-kentish-town", "9C5C8E00001A05C4"), ("lgw-chalk-farm", "9C5C8E00001A05C5"))
RADIO = ("51.54213", "-0.14277", "867100000", "868300000", "-117", "3.375", "00189440",
         "260B5A7C", "AXA50tHUGUucuzS", "pax-high-street")  # fmt: skip
AQ_MAPPING = {"fields": [{"path": "pm2_5", "property": "pm2_5", "unit": "ug/m3"},
                         {"path": "pm10", "property": "pm10", "unit": "ug/m3"}]}  # fmt: skip
OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "cs-pax": ("chirpstack", {"ports": {1: {"codec": "paxcounter_packed"}}}),
    "cs-lpp": ("chirpstack", {"ports": {1: {"codec": "paxcounter_lpp"}}}),
    "cs-aq": ("chirpstack", {"decoded": AQ_MAPPING}),
    "tts-pax": ("thethingsstack", {"ports": {1: {"codec": "paxcounter_packed"}}}),
    "tts-lpp": ("thethingsstack", {"ports": {2: {"codec": "paxcounter_lpp"}}}),
    "tts-aq": ("thethingsstack", {"decoded": AQ_MAPPING}),
}


def frames(fmt: str) -> list[tuple[int, bytes, int, int | None]]:
    """(fPort, frame, wifi count or None for a status frame, pm10 x10 or None) of one format."""
    out = []
    for case in PAX[fmt]:
        wifi = int(case["case"].split("=")[1].split(",")[0].split("+")[0]) if case["case"].startswith("wifi=") else None
        pm10 = 125 if case["case"].endswith("+sds") else None  # the harness's SDS011: 12.5 ug/m3
        out.append((case["fport"], bytes.fromhex(case["hex"]), wifi, pm10))  # type: ignore[arg-type]
    return out


def chirpstack_up(sensor: str, n: int, f_port: int, data: bytes, obj: dict[str, float] | None,
                  copy: int) -> tuple[str, bytes]:  # fmt: skip
    """Copy 0 and 1 of the same uplink, as two ChirpStack instances each heard it through its own
    gateway: a new deduplicationId and gateway, the same device session and frame counter."""
    eui = EUI[sensor]
    event = integration_pb2.UplinkEvent(
        deduplication_id=f"3ac7e3c4-4401-4b8d-{copy:04x}-{n:012x}",
        device_info=integration_pb2.DeviceInfo(
            tenant_id="52f14cd4-c6f1-4fbd-8f87-4025e1d49242", tenant_name="Camden",
            application_id=APP, application_name="street", device_profile_name="Paxcounter",
            device_name="pax-high-street", dev_eui=eui, tags={"site": "camden-lc-0423"}),
        dev_addr="00189440", dr=5, f_cnt=n, f_port=f_port, data=data,
        rx_info=[gw_pb2.UplinkRxInfo(
            gateway_id=GATEWAYS[copy], uplink_id=4217106255 + copy, rssi=-117, snr=3.375,
            location=common_pb2.Location(latitude=51.54213, longitude=-0.14277, altitude=30))],
        tx_info=gw_pb2.UplinkTxInfo(frequency=867100000),
    )  # fmt: skip
    event.time.FromDatetime(datetime.fromtimestamp(T0 + n, UTC))
    if obj is not None:
        event.object.update(obj)
    body = json_format.MessageToJson(event, always_print_fields_with_no_presence=bool(n % 2))
    return f"application/{APP}/device/{eui}/event/up", body.encode()


def tts_up(sensor: str, n: int, f_port: int, data: bytes, decoded: dict[str, float] | None,
           copy: int) -> tuple[str, bytes]:  # fmt: skip
    """The Things Stack's uplink message (data-formats doc), as two bridges delivered it: the
    same correlation id and frame counter, each with the gateway that heard it."""
    eui = EUI[sensor]
    device = f"eui-{eui.lower()}"
    received = datetime.fromtimestamp(T0 + n, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    gateway_id, gateway_eui = TTS_GATEWAYS[copy]
    up: dict[str, Any] = {
        "session_key_id": "AXA50tHUGUucuzS/bCGMNw==", "f_port": f_port, "f_cnt": n,
        "frm_payload": base64.b64encode(data).decode(),
        "rx_metadata": [{"gateway_ids": {"gateway_id": gateway_id, "eui": gateway_eui},
                         "rssi": -117, "channel_rssi": -117, "snr": 3.375,
                         "location": {"latitude": 51.54213, "longitude": -0.14277}}],
        "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}},
                     "frequency": "868300000"},
        "received_at": received,
    }  # fmt: skip
    if decoded is not None:
        up["decoded_payload"] = decoded
    body = {"end_device_ids": {"device_id": device, "application_ids": {"application_id": "street"},
                               "dev_eui": eui, "dev_addr": "260B5A7C"},
            "correlation_ids": [f"as:up:01HX{n:022d}", f"gs:uplink:{copy}"],
            "received_at": received, "uplink_message": up}  # fmt: skip
    return f"v3/street@camden/devices/{device}/up", json.dumps(body).encode()


def uplinks() -> tuple[list[tuple[str, bytes]], dict[str, dict[str, Any]]]:
    """Every message (each uplink twice) and, per sensor, what the readings must be."""
    sent: list[tuple[str, bytes]] = []
    want: dict[str, dict[str, Any]] = {}
    n = 0
    for sensor, fmt in (("cs-pax", "packed"), ("cs-lpp", "lpp_dynamic"), ("tts-pax", "packed"),
                        ("tts-lpp", "lpp_packed")):  # fmt: skip
        build = chirpstack_up if sensor.startswith("cs") else tts_up
        counts, pm10 = [], []
        for f_port, frame, wifi, pm in frames(fmt):
            n += 1
            if f_port != int(next(iter(OPTIONS[sensor][1]["ports"]))):
                continue  # the packed encoder's status and battery ports: not mapped here
            sent += [build(sensor, n, f_port, frame, None, copy) for copy in (0, 1)]
            if wifi is not None:
                counts.append(wifi)
            if pm is not None:
                pm10.append((pm / 10, T0 + n))
        want[sensor] = {"wifi_devices_max": max(counts), "pm10": pm10}
    for sensor in ("cs-aq", "tts-aq"):
        build = chirpstack_up if sensor.startswith("cs") else tts_up
        readings = []
        for i in range(4):
            n += 1
            decoded = {"pm2_5": 6.5 + i, "pm10": 11.25 + i, "battery": 3.6}
            sent += [build(sensor, n, 2, bytes([i, 1, 2]), decoded, copy) for copy in (0, 1)]
            readings.append((6.5 + i, T0 + n))
        want[sensor] = {"pm2_5": readings}
    return sent, want


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_lorawan_uplinks_become_the_right_observations_once_and_nothing_identifying_leaves(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    global T0
    T0 = _start()
    data = tmp_path / "data"
    sensors = "\n".join(f"  - {{id: {sid}, driver: {driver}, mqtt: {{}}, "
                        f"options: {json.dumps({'dev_eui': EUI[sid], **opts})}}}"
                        for sid, (driver, opts) in OPTIONS.items())  # fmt: skip
    cfg = parse_config(f"""
gateway: {{id: camden-lc-0423, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{data}'}}
sensors:
{sensors}
inputs: {{mqtt: {{host: 127.0.0.1, port: {mosquitto.port}}}}}
privacy: {{window: 1h, min_count: 3, disclosure: suppress}}
sinks:
  file: {{path: observations.jsonl}}
  mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, tls: false}}
ops: {{http: null}}
""", "lorawan.yaml", {})
    logs = io.StringIO()
    setup_logging("debug", stream=logs)
    sent, want = uplinks()
    captured: list[bytes] = []

    async def scenario() -> Pipeline:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
            await sub.subscribe("v1.1/#", qos=1)

            async def collect() -> None:
                async for m in sub.messages:
                    captured.append(str(m.topic).encode() + b" " + bytes(m.payload))  # type: ignore[arg-type]

            collector = asyncio.create_task(collect())
            p = Pipeline(cfg)
            await p.start()
            await wait_for(lambda: getattr(p, "mqtt_source", None) is not None and p.mqtt_source.connected,
                           what="subscription")  # fmt: skip
            await asyncio.sleep(0.3)
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as server:
                for topic, payload in sent:
                    await server.publish(topic, payload, qos=1)
            total = p.metrics.counter("gateway_mqtt_messages_total", "")
            await wait_for(lambda: total.total() >= len(sent), what="every uplink received")
            await wait_for(lambda: p.queue.empty(), what="committed")
            await p.stop()  # closes the open windows: the per-window maxima are published
            await wait_for(lambda: sum(b"/Observations " in c for c in captured) >= p.stats.committed,
                           what="the city feed")  # fmt: skip
            collector.cancel()
            return p

    p = asyncio.run(scenario())
    logging.getLogger().handlers.clear()
    metrics = p.metrics
    assert metrics.counter("gateway_mqtt_bad_messages_total", "").total() == 0, metrics.render()
    ignored = metrics.counter("gateway_mqtt_ignored_total", "")
    assert ignored.get(sensor="cs-lpp", reason="not_a_count") == 2  # LPP status and battery frames
    for sid in OPTIONS:  # every second copy: dropped as a duplicate, counted once
        uplinks_of = sum(1 for t, _ in sent if EUI[sid].lower() in t.lower()) // 2
        assert ignored.get(sensor=sid, reason="duplicate") == uplinks_of, sid

    observations = [json.loads(line) for line in (data / "observations.jsonl").read_text().splitlines()]
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for o in observations:
        ds = p.plan.datastreams[o["Datastream"]["@iot.id"]]
        by.setdefault((ds.sensor_id, ds.property), []).append(o)
    for sid in ("cs-pax", "cs-lpp", "tts-pax", "tts-lpp"):
        assert (sid, "wifi_devices") not in by and (sid, "pax_devices") not in by  # person counts
        [peak] = by[(sid, "wifi_devices_max")]  # one window: the largest count, once
        assert peak["result"] == want[sid]["wifi_devices_max"] and peak["parameters"]["aggregation"] == "max"
        got = sorted((o["result"], o["phenomenonTime"]) for o in by.get((sid, "pm10"), []))
        assert got == sorted((v, iso(t)) for v, t in want[sid]["pm10"]), sid  # once each, server time
    for sid in ("cs-aq", "tts-aq"):
        got = sorted((o["result"], o["phenomenonTime"]) for o in by[(sid, "pm2_5")])
        assert got == sorted((v, iso(t)) for v, t in want[sid]["pm2_5"]), sid
        assert len(by[(sid, "pm10")]) == 4 and (sid, "battery") not in by  # unmapped: never read

    outputs = {"logs": logs.getvalue().encode(), "metrics": metrics.render().encode(),
               "city feed": b"\n".join(captured)}  # fmt: skip
    for f in sorted(data.rglob("*")):
        if f.is_file():
            outputs[f"data dir: {f.name}"] = f.read_bytes()
    assert b"Observations" in outputs["city feed"] and b"gateway started" in outputs["logs"]
    needles = [*EUI.values(), *GATEWAYS, *(g for pair in TTS_GATEWAYS for g in pair), *RADIO, APP]
    hits = [f"{n!r} in {where}" for n in needles for where, blob in outputs.items()
            if n.lower().encode() in blob.lower()]  # fmt: skip
    assert not hits, hits
