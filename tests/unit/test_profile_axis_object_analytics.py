"""Axis Object Analytics profile: string counts become integers; the camera serial stays out."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.base import Decoded, DecodeError, Event
from firmware_bridge.drivers import axis_object_analytics as axis

SAMPLES = json.loads((Path(__file__).parents[1] / "data" / "mqtt_devices.json").read_text())
PAYLOADS = SAMPLES["axis_object_analytics"]["payloads"]
TOPIC = "axis/ACCC8E012345/event/CameraApplicationPlatform/ObjectAnalytics/Device1Scenario1"


def decode(payload: str | dict[str, Any]) -> list[Event]:
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return axis.Decoder(axis.Options.model_validate({})).decode(TOPIC, raw.encode())


def with_data(**data: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(PAYLOADS[0])
    event["message"]["data"] = data
    return event


def test_passage_counts_sample_decodes_to_integers_with_camera_time() -> None:
    assert decode(PAYLOADS[0]) == [
        Decoded({"passages": 3, "passages_human": 3}, device_time=1741946405.123)]  # fmt: skip


def test_occupancy_sample_decodes_to_integers_with_camera_time() -> None:
    assert decode(PAYLOADS[1]) == [
        Decoded({"occupancy": 4, "occupancy_human": 4}, device_time=1741946465.123)]  # fmt: skip


def test_camera_serial_never_reaches_a_reading() -> None:
    for payload in PAYLOADS:
        assert "ACCC8E012345" not in repr(decode(payload))


def test_vehicle_classes_and_integer_counts_are_accepted() -> None:
    [event] = decode(with_data(scenario="passageCounts", total=9, totalHuman="5", totalCar="3",
                               totalBike="1"))  # fmt: skip
    assert isinstance(event, Decoded)
    assert event.values == {"passages": 9, "passages_human": 5, "passages_car": 3,
                            "passages_bike": 1}  # fmt: skip


@pytest.mark.parametrize(
    ("data", "reason"),
    [({"scenario": "passageCounts", "totalHuman": "3"}, "missing_field"),
     ({"scenario": "fenceAlarm", "total": "1"}, "unknown_scenario"),
     ({"scenario": ["passageCounts"], "total": "1"}, "unknown_scenario"),
     ({"scenario": "numberOfOccupants", "total": "-1"}, "wrong_type"),
     ({"scenario": "numberOfOccupants", "total": "4", "human": "four"}, "wrong_type"),
     ({"scenario": "numberOfOccupants", "total": True}, "wrong_type")],
)  # fmt: skip
def test_malformed_counts_are_errors(data: dict[str, Any], reason: str) -> None:
    [event] = decode(with_data(**data))
    assert isinstance(event, DecodeError) and event.reason == reason


@pytest.mark.parametrize("payload", ["[]", '{"message": 1}', '{"message": {"data": []}}'])
def test_wrong_shapes_are_errors(payload: str) -> None:
    [event] = decode(payload)
    assert isinstance(event, DecodeError)


def test_missing_or_absurd_timestamp_leaves_device_time_to_the_gateway() -> None:
    event = json.loads(PAYLOADS[1])
    del event["timestamp"]
    [no_time] = decode(event)
    event["timestamp"] = 10**20
    [absurd] = decode(event)
    assert isinstance(no_time, Decoded) and no_time.device_time is None
    assert isinstance(absurd, Decoded) and absurd.device_time is None


def test_catalogue_has_no_personal_fields_and_counts_in_count_units() -> None:
    cat = axis.DRIVER.catalogue_for({})
    assert cat.personal_fields == ()
    assert all(f.unit == "{count}" for f in cat.fields)
    decoded_keys = {k for fields in axis.SCENARIOS.values() for k in fields.values()}
    assert decoded_keys == {f.key for f in cat.fields}


def test_simulated_events_decode_cleanly_on_the_default_topic() -> None:
    messages = axis.simulate(random.Random(2), 1_741_946_405.0, axis.DRIVER.default_topic)
    assert all(t.endswith("/ObjectAnalytics/Device1Scenario1") for t, _ in messages)
    dec = axis.Decoder(axis.Options.model_validate({}))
    events = [e for t, p in messages for e in dec.decode(t, p)]
    assert len(events) == 2 and all(isinstance(e, Decoded) for e in events)
