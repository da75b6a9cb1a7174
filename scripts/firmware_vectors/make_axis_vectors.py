#!/usr/bin/env python3
"""Write tests/data/firmware/axis_object_analytics.json from Axis's published examples and the
barnowl-axis consumer. Hand-built, each vector cited; not run by the tests."""

from __future__ import annotations

import json
from pathlib import Path

OUT = (
    Path(__file__).resolve().parents[2]
    / "tests"
    / "data"
    / "firmware"
    / "axis_object_analytics.json"
)
AXIS = "AxisCommunications/tutorial-axis-object-analytics-to-grafana@2f99184a48de519a876d85158a96f0dce038335a README.md"
BARNOWL = "reelyactive/barnowl-axis@9f9601b5fd3e8f8c5de88689a6c946846979273f"
SERIAL = "0123456789AB"
TOPIC = f"axis/{SERIAL}/event/CameraApplicationPlatform/ObjectAnalytics/Device1Scenario1"


def event(data, serial=SERIAL, ts=1670518346712, scenario_topic="Device1Scenario1"):
    return json.dumps(
        {
            "topic": f"axis:CameraApplicationPlatform/ObjectAnalytics/{scenario_topic}",
            "timestamp": ts,
            "serial": serial,
            "message": {"source": {}, "key": {}, "data": data},
        }
    )


CROSSLINE_1 = {
    "startTime": "2022-12-06T22:01:25Z",
    "reason": "car",
    "total": "20960",
    "totalBus": "0",
    "totalCar": "18103",
    "totalHuman": "0",
    "totalMotorcycle/bicycle": "0",
    "totalTruck": "2857",
    "totalUnknown": "0",
}
CROSSLINE_2 = {
    "startTime": "2022-12-06T22:01:25Z",
    "reason": "car",
    "total": "21093",
    "totalBus": "0",
    "totalCar": "18222",
    "totalHuman": "0",
    "totalMotorcycle/bicycle": "0",
    "totalTruck": "2871",
    "totalUnknown": "0",
}


def passages(d):
    out = {"passages": int(d["total"])}
    for k, val in d.items():
        if k.startswith("total") and k != "total":
            cls = k[5:].replace("/", "_").lower()
            out[f"passages_{cls}"] = int(val)
    return out


vectors = [
    {
        "topic": TOPIC,
        "payload": event(CROSSLINE_1),
        "expect": "reading",
        "values": passages(CROSSLINE_1),
        "device_time": 1670518346.712,
        "cite": AXIS
        + ", 'Configure AXIS Object Analytics to send MQTT messages' step 14: Axis's own Crossline counting example; no `scenario` key",
    },
    {
        "topic": TOPIC,
        "payload": event(CROSSLINE_2, ts=1670519332535),
        "expect": "reading",
        "values": passages(CROSSLINE_2),
        "device_time": 1670519332.535,
        "cite": AXIS + ", 'Route messages from AWS IoT Core to Amazon Timestream' step 5",
    },
    {
        "topic": f"axis/{SERIAL}/event/tnsaxis:CameraApplicationPlatform/ObjectAnalytics/Device1Scenario1",
        "payload": event(CROSSLINE_1),
        "expect": "reading",
        "values": passages(CROSSLINE_1),
        "device_time": 1670518346.712,
        "cite": AXIS
        + " step 8: the camera's 'Include condition namespaces' option (on unless cleared) adds namespace prefixes to topic levels",
        "note": "inferred topic form: the exact prefixes per level are not in a primary source read here; the decoder must strip any `ns:` prefix from every level",
    },
    {
        "topic": f"axis/{SERIAL}/event/CameraApplicationPlatform/ObjectAnalytics/Device1Scenario2",
        "payload": event(
            {"scenario": "Crossline", "reason": "human", "total": "12", "totalHuman": "12"},
            serial="B8A44F941234",
            ts=1645568542222,
            scenario_topic="Device1Scenario2",
        ),
        "expect": "reading",
        "values": {"passages": 12, "passages_human": 12},
        "device_time": 1645568542.222,
        "cite": BARNOWL
        + " lib/objectanalyticsdecoder.js lines 87-100 and README 'Supported AXIS Object Analytics scenarios': the user-defined scenario name rides in data.scenario",
    },
    {
        "topic": f"axis/{SERIAL}/event/CameraApplicationPlatform/ObjectAnalytics/Device1Scenario3",
        "payload": event(
            {"scenario": "Occupancy", "total": "4", "human": "4"},
            serial="B8A44F941234",
            ts=1645568542222,
            scenario_topic="Device1Scenario3",
        ),
        "expect": "reading",
        "values": {"occupancy": 4, "occupancy_human": 4},
        "device_time": 1645568542.222,
        "cite": BARNOWL + " lib/objectanalyticsdecoder.js lines 88-92",
    },
    {
        "topic": f"axis/{SERIAL}/event/CameraApplicationPlatform/ObjectAnalytics/Device1Scenario1",
        "payload": event(
            {"scenario": "numberOfOccupants", "total": "7", "human": "7"},
            serial="B8A44F941234",
            scenario_topic="Device1Scenario1",
        ),
        "expect": "reading",
        "values": {"occupancy": 7, "occupancy_human": 7},
        "device_time": 1670518346.712,
        "cite": BARNOWL
        + " lib/testlistener.js lines 44-58 (the consumer's simulated occupancy message; its first decoder used these names, commit e4ebd9c)",
    },
    {
        "topic": f"axis/{SERIAL}/event/CameraApplicationPlatform/ObjectAnalytics/Device1Scenario2",
        "payload": event(
            {"scenario": "passageCounts", "reason": "human", "total": "3", "totalHuman": "3"},
            serial="B8A44F941234",
            scenario_topic="Device1Scenario2",
        ),
        "expect": "reading",
        "values": {"passages": 3, "passages_human": 3},
        "device_time": 1670518346.712,
        "cite": BARNOWL + " lib/testlistener.js lines 62-77",
    },
    {
        "topic": f"axis/{SERIAL}/event/CameraApplicationPlatform/ObjectAnalytics/Device1Scenario4",
        "payload": event({"active": "1"}, scenario_topic="Device1Scenario4"),
        "expect": "ignored",
        "cite": BARNOWL
        + " lib/objectanalyticsdecoder.js lines 67-76: object-in-area, line-crossing and time-in-area scenarios send only `active`",
    },
    {
        "topic": f"axis/{SERIAL}/event/CameraApplicationPlatform/ObjectAnalytics/Device1Scenario4",
        "payload": event({"active": "0"}, scenario_topic="Device1Scenario4"),
        "expect": "ignored",
        "cite": BARNOWL + " lib/objectanalyticsdecoder.js lines 67-76",
    },
    {
        "topic": f"axis/{SERIAL}/event/tns1:Device/tnsaxis:IO/VirtualInput",
        "payload": json.dumps(
            {
                "topic": "onvif:Device/axis:IO/VirtualInput",
                "timestamp": 1670518346712,
                "serial": SERIAL,
                "message": {"source": {"port": "1"}, "key": {}, "data": {"active": "1"}},
            }
        ),
        "expect": "ignored",
        "cite": "developer.axis.com/vapix/network-video/mqtt-event-bridge (MQTT Event Bridge API, "
        "'Publish events': topic filter onvif:Device/axis:IO/VirtualInput) with " + AXIS
        + " step 8 (topic = condition prefix + condition name)",
        "note": "inferred: another event of the same camera reaches the default subscription "
        "axis/+/event/#; the payload follows the Object Analytics envelope above",
    },
    # malformed
    {
        "topic": TOPIC,
        "payload": event({**CROSSLINE_1, "total": "-3"}),
        "expect": "error",
        "note": "wrong_type",
        "cite": "malformed: negative count",
    },
    {
        "topic": TOPIC,
        "payload": event({**CROSSLINE_1, "totalCar": "lots"}),
        "expect": "error",
        "note": "wrong_type",
        "cite": "malformed: not a number",
    },
    {
        "topic": TOPIC,
        "payload": event({k: v for k, v in CROSSLINE_1.items() if k != "total"}),
        "expect": "error",
        "note": "missing_field",
        "cite": "malformed: class totals without the overall total",
    },
    {
        "topic": TOPIC,
        "payload": json.dumps({"topic": "x", "timestamp": 1, "serial": SERIAL}),
        "expect": "error",
        "note": "missing_field",
        "cite": "malformed: no message.data",
    },
    {
        "topic": TOPIC,
        "payload": "[]",
        "expect": "error",
        "note": "wrong_type",
        "cite": "malformed: not an object",
    },
    {
        "topic": TOPIC,
        "payload": "{",
        "expect": "error",
        "note": "not_json",
        "cite": "malformed: truncated JSON",
    },
]

doc = {
    "source": {
        "axis_example": AXIS
        + " (the same page is published as developer.axis.com/analytics/axis-object-analytics/how-to-guides/visualize-axis-object-analytics-data-using-grafana-dashboard/)",
        "consumer": BARNOWL
        + " (MIT): default subscription axis/+/event/CameraApplicationPlatform/ObjectAnalytics/# (lib/mqttlistener.js lines 12-13)",
        "topic": "axis/<serial>/event/<condition topic>: 'Use default condition prefix' gives axis/<serial>; 'Include condition name' appends the event topic (README step 8)",
        "counts": "strings; Crossline totals run since the scenario's last reset (startTime); Occupancy is the number present now",
        "classes": "the Crossline example's classes: Bus, Car, Human, Motorcycle/bicycle, Truck, Unknown (key `totalMotorcycle/bicycle`, with a slash). Separate totalMotorcycle / totalBicycle keys were not found in a primary source; map every total<Class> key generically",
        "expect": "reading: decodes to `values` (proposed field names: passages[_<class>], occupancy[_<class>], class lower-cased with '/' as '_'); ignored: valid but not a count; error: a DecodeError whose reason is `note`",
        "generator": "scripts/firmware_vectors/make_axis_vectors.py",
    },
    "vectors": vectors,
}
OUT.write_text(json.dumps(doc, indent=1) + "\n")
print(f"wrote {OUT}: {len(vectors)} vectors")
