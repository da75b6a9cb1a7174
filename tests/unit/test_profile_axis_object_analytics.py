"""AXIS Object Analytics profile against Axis's own published Crossline example and the
barnowl-axis consumer (tests/data/firmware/axis_object_analytics.json, each vector cited): no
`scenario` key needed, every `total<Class>` key mapped, condition-namespace topics read, other
events and triggers ignored, malformed events errors; the camera serial never kept."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from paho.mqtt.client import topic_matches_sub

from firmware_bridge.base import Aggregation, Decoded, DecodeError, Event, Ignored, Role
from firmware_bridge.drivers import MESSAGE_DRIVERS
from firmware_bridge.drivers import axis_object_analytics as axis
from tests.unit.firmware_data import load

VECTORS = load("firmware", "axis_object_analytics.json")["vectors"]
AXIS_OWN = next(v for v in VECTORS if v["cite"].startswith("AxisCommunications/"))
TOPIC = AXIS_OWN["topic"]


def decode(payload: str | dict[str, Any], topic: str = TOPIC) -> list[Event]:
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return axis.Decoder(axis.Options()).decode(topic, raw.encode())


def with_data(**data: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(AXIS_OWN["payload"])
    event["message"]["data"] = data
    return event


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v['expect']}:{v['cite'][:40]}")
def test_every_vector_decodes_as_its_source_says(vector: dict[str, Any]) -> None:
    assert topic_matches_sub(axis.DRIVER.default_topic, vector["topic"])
    events = decode(vector["payload"], vector["topic"])
    assert len(events) == 1, events
    [event] = events
    if vector["expect"] == "reading":
        assert event == Decoded(vector["values"], device_time=vector["device_time"])
    elif vector["expect"] == "ignored":
        assert isinstance(event, Ignored), event
    else:
        assert isinstance(event, DecodeError) and event.reason == vector["note"], event


def test_axis_own_crossline_example_needs_no_scenario_and_maps_every_class() -> None:
    assert '"scenario"' not in AXIS_OWN["payload"]
    [event] = decode(AXIS_OWN["payload"])
    assert isinstance(event, Decoded)
    assert set(event.values) == {"passages", "passages_bus", "passages_car", "passages_human",
                                 "passages_motorcycle_bicycle", "passages_truck",
                                 "passages_unknown"}  # fmt: skip


def test_separate_motorcycle_and_bicycle_and_other_vehicle_keys_map_generically() -> None:
    [event] = decode(with_data(total="5", totalMotorcycle="2", totalBicycle="1",
                               totalOtherVehicle="2"))  # fmt: skip
    assert isinstance(event, Decoded)
    assert dict(event.values) == {"passages": 5, "passages_motorcycle": 2, "passages_bicycle": 1,
                                  "passages_other_vehicle": 2}  # fmt: skip


def test_a_class_the_catalogue_does_not_know_is_skipped_and_flagged_not_refused() -> None:
    [event] = decode(with_data(total="4", totalHuman="3", totalScooter="1"))
    assert event == Decoded({"passages": 4, "passages_human": 3},
                            device_time=AXIS_OWN["device_time"], flags=("unmapped_class",))  # fmt: skip


def test_the_scenario_name_is_a_label_not_a_type() -> None:
    """Installers name scenarios as they like; content decides (barnowl-axis needs the names
    Crossline/Occupancy, its older test data used passageCounts/numberOfOccupants)."""
    for name in ("Crossline", "Front door", "numberOfOccupants", "x"):
        [event] = decode(with_data(scenario=name, total="2", totalHuman="2"))
        assert isinstance(event, Decoded) and event.values == {"passages": 2, "passages_human": 2}
        [event] = decode(with_data(scenario=name, total="2", human="2"))
        assert isinstance(event, Decoded) and event.values == {"occupancy": 2, "occupancy_human": 2}


@pytest.mark.parametrize(
    "topic",
    ["axis/ACCC8E012345/event/tnsaxis:CameraApplicationPlatform/tnsaxis:ObjectAnalytics/Device1Scenario1",
     "axis/ACCC8E012345/event/CameraApplicationPlatform/ObjectAnalytics/Device1Scenario1",
     "axis/ACCC8E012345/event"],
)  # fmt: skip
def test_condition_namespaces_and_a_topic_without_the_condition_name(topic: str) -> None:
    """Without "Include condition name" the event's own `topic` field says what it is."""
    [event] = decode(AXIS_OWN["payload"], topic)
    assert isinstance(event, Decoded) and event.values["passages"] == 20960


def test_other_events_and_triggers_are_ignored_not_errors() -> None:
    other = with_data(active="1")
    other["topic"] = "onvif:Device/axis:IO/VirtualInput"
    assert decode(other, "axis/ACCC8E012345/event/tns1:Device/tnsaxis:IO/VirtualInput") == [
        Ignored("other_event")]  # fmt: skip
    assert decode(with_data(active="0")) == [Ignored("trigger")]
    [event] = decode(with_data(reason="human"))
    assert isinstance(event, DecodeError) and event.reason == "unknown_event"


def test_a_sensor_bound_to_one_scenario_ignores_the_others() -> None:
    """Two scenarios' running totals in one sensor would read as resets at every switch."""
    dec = axis.Decoder(axis.Options(scenario="Device1Scenario2"))
    crossline = next(v for v in VECTORS if v["topic"].endswith("Device1Scenario2"))
    assert isinstance(dec.decode(crossline["topic"], crossline["payload"].encode())[0], Decoded)
    assert dec.decode(TOPIC, AXIS_OWN["payload"].encode()) == [Ignored("other_scenario")]
    # without the condition name in the topic, the event's own topic field names the scenario
    assert dec.decode("axis/0123456789AB/event", AXIS_OWN["payload"].encode()) == [
        Ignored("other_scenario")]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "reason"),
    [({"total": "-1"}, "wrong_type"), ({"total": "3.5"}, "wrong_type"),
     ({"total": "3", "totalHuman": None}, "wrong_type"), ({"total": True}, "wrong_type"),
     ({"total": str(10**10)}, "wrong_type"), ({"totalHuman": "3"}, "missing_field")],
)  # fmt: skip
def test_malformed_counts_are_errors(data: dict[str, Any], reason: str) -> None:
    [event] = decode(with_data(**data))
    assert isinstance(event, DecodeError) and event.reason == reason


def test_the_camera_serial_never_enters_a_reading() -> None:
    for vector in VECTORS:
        for event in decode(vector["payload"], vector["topic"]):
            assert "0123456789AB" not in repr(event) and "B8A44F941234" not in repr(event)


def test_passages_are_running_totals_and_occupancy_person_counts_with_their_aggregates() -> None:
    cat = axis.CATALOGUE
    raw = [f for f in cat.fields if not f.derived]
    assert raw and all(f.personal for f in raw)
    for f in raw:
        if f.key.startswith("passages"):
            agg = cat.field(f"{f.key}_increment")
            assert f.role is Role.RUNNING_TOTAL and agg.aggregation is Aggregation.INCREMENT
        else:
            agg = cat.field(f"{f.key}_max")
            assert f.role is Role.PERSON_COUNT and agg.aggregation is Aggregation.MAX
        assert agg.source == f.key and not agg.personal


def test_simulated_events_have_the_firmware_shape_and_decode_cleanly() -> None:
    for base in (axis.DRIVER.default_topic, "axis/ACCC8E000001/event/CameraApplicationPlatform/ObjectAnalytics/#"):
        messages = axis.simulate(random.Random(2), 1_741_946_405.0, base)
        assert [t.rsplit("/", 1)[-1] for t, _ in messages] == ["Device1Scenario1", "Device1Scenario2"]
        events = [e for t, p in messages for e in decode(p.decode(), t)]
        assert all(isinstance(e, Decoded) for e in events), events
        assert '"scenario"' not in messages[0][1].decode()  # as Axis's own example


def test_registered_in_the_mqtt_registry() -> None:
    assert MESSAGE_DRIVERS["axis_object_analytics"] is axis.DRIVER
