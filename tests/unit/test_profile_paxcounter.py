"""Paxcounter MQTT profile against what the firmware publishes: `paxout/<port>`, base64 of the
frame its own encoder wrote (tests/data/firmware/paxcounter.json, made by compiling the
firmware's src/payload.cpp), for every encoder; status and battery frames are ignored, not
errors; malformed frames are errors, never exceptions."""

from __future__ import annotations

import base64
import random

import pytest
from paho.mqtt.client import topic_matches_sub
from pydantic import ValidationError

from firmware_bridge.base import Aggregation, Decoded, DecodeError, Ignored, ObservationType, Role
from firmware_bridge.drivers import MESSAGE_DRIVERS, paxcounter
from tests.unit.firmware_data import load
from tests.unit.test_paxcounter_payload import expected

FORMATS = load("firmware", "paxcounter.json")["formats"]
ENCODER = {"packed": "packed", "packed_opensensebox": "packed", "plain": "plain",
           "lpp_dynamic": "lpp", "lpp_packed": "lpp"}  # fmt: skip
CASES = [(fmt, case) for fmt in FORMATS for case in FORMATS[fmt]]


def decoder(encoder: str = "packed", **more: object) -> paxcounter.Decoder:
    return paxcounter.Decoder(paxcounter.Options.model_validate({"encoder": encoder, **more}))


@pytest.mark.parametrize(("fmt", "case"), CASES, ids=[f"{f}-{c['case']}" for f, c in CASES])
def test_every_firmware_frame_on_its_mqtt_topic(fmt: str, case: dict) -> None:
    assert topic_matches_sub(paxcounter.DRIVER.default_topic, case["mqtt_topic"])
    assert base64.b64decode(case["mqtt_payload"]) == bytes.fromhex(case["hex"])
    events = decoder(ENCODER[fmt]).decode(case["mqtt_topic"], case["mqtt_payload"].encode())
    if case["case"] in ("status", "battery"):
        assert len(events) == 1 and isinstance(events[0], Ignored), events
        return
    assert events == [Decoded(expected(case["case"]).values())]


def test_a_default_build_sends_wifi_only_and_pax_equals_wifi() -> None:
    case = next(c for c in FORMATS["packed"] if c["case"] == "wifi=42")
    [event] = decoder().decode(case["mqtt_topic"], case["mqtt_payload"].encode())
    assert event == Decoded({"wifi_devices": 42, "pax_devices": 42})


def test_the_hello_on_paxout_and_other_ports_are_ignored() -> None:
    assert decoder().decode("paxout", b"paxcounter_0a1b2c") == [Ignored("hello")]
    assert decoder().decode("paxout/9", b"AAAAAA==") == [Ignored("not_count_port")]
    moved = decoder(count_port=10)
    assert moved.decode("paxout/1", b"KgA=") == [Ignored("not_count_port")]
    assert moved.decode("paxout/10", b"KgA=") == [Decoded({"wifi_devices": 42, "pax_devices": 42})]


@pytest.mark.parametrize(
    ("encoder", "topic", "payload", "reason"),
    [("packed", "paxout/1", b"not base64!", "bad_base64"),
     ("packed", "paxout/1", b'{"wifi": 23}', "bad_base64"),  # the old JSON guess
     ("packed", "paxout/1", base64.b64encode(b"\x01\x02\x03"), "bad_length"),
     ("packed", "paxout/1", b"", "bad_length"),
     ("plain", "paxout/1", base64.b64encode(b"\x00"), "bad_length"),
     ("lpp", "paxout/1", base64.b64encode(b"\x15\x65\x00"), "truncated"),
     ("lpp", "paxout/1", base64.b64encode(b"\x15\x67\x00\x10"), "wrong_type"),
     ("packed", "paxout/one", b"KgA=", "bad_port"),
     ("packed", "paxout/1", b"A" * 1000, "too_large")],
)  # fmt: skip
def test_malformed_frames_are_errors(encoder: str, topic: str, payload: bytes, reason: str) -> None:
    events = decoder(encoder).decode(topic, payload)
    assert len(events) == 1 and isinstance(events[0], DecodeError), events
    assert events[0].reason == reason


def test_counts_are_person_counts_that_leave_as_a_per_window_max() -> None:
    cat = paxcounter.CATALOGUE
    for key in ("wifi_devices", "ble_devices", "pax_devices"):
        f = cat.field(key)
        assert f.role is Role.PERSON_COUNT and f.observation_type is ObservationType.COUNT
        peak = cat.field(f"{key}_max")
        assert (peak.aggregation, peak.source, peak.personal) == (Aggregation.MAX, key, False)
    assert {f.key for f in cat.public_fields} == {"pm10", "pm2_5"}


def test_options_refuse_an_unknown_encoder_and_a_bad_port() -> None:
    for bad in ({"encoder": "json"}, {"count_port": 0}, {"count_port": 224}):
        with pytest.raises(ValidationError):
            paxcounter.Options.model_validate(bad)


def test_simulated_device_speaks_the_firmware_format() -> None:
    topic = paxcounter.DRIVER.default_topic
    dec = decoder()
    events = []
    for seed in range(30):
        for t, p in paxcounter.simulate(random.Random(seed), 1_741_946_400.0 + seed, topic):
            assert topic_matches_sub(topic, t)
            events += dec.decode(t, p)
    assert not [e for e in events if isinstance(e, DecodeError)]
    assert Ignored("not_count_port") in events  # the status frame now and then
    readings = [e for e in events if isinstance(e, Decoded)]
    assert len(readings) == 30 and all(set(e.values) == {"wifi_devices", "pax_devices"} for e in readings)


def test_registered_in_the_mqtt_registry() -> None:
    assert MESSAGE_DRIVERS["paxcounter"] is paxcounter.DRIVER
