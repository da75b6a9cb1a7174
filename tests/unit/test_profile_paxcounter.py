"""Paxcounter profile: on-device counts pass through as non-personal per-reading counts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from firmware_bridge.base import Decoded, DecodeError, ObservationType
from firmware_bridge.drivers import paxcounter

SAMPLES = json.loads((Path(__file__).parents[1] / "data" / "mqtt_devices.json").read_text())
TOPIC = "paxcounter/pax-3/count"


def test_sample_counts_decode() -> None:
    payload = SAMPLES["paxcounter"]["payloads"][0].encode()
    assert paxcounter.Decoder(paxcounter.Options.model_validate({})).decode(TOPIC, payload) == [
        Decoded({"wifi_devices": 23, "ble_devices": 41})]  # fmt: skip


def test_a_device_without_ble_reports_wifi_only() -> None:
    assert paxcounter.Decoder(paxcounter.Options.model_validate({})).decode(TOPIC, b'{"wifi": 7}') == [Decoded({"wifi_devices": 7})]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(b'{"wifi": -1}', "wrong_type"), (b'{"wifi": "many"}', "wrong_type"),
     (b'{"wifi": true}', "wrong_type"), (b'{"pax": 3}', "missing_field"),
     (b"[23, 41]", "wrong_type"), (b"23,41", "not_json")],
)  # fmt: skip
def test_malformed_counts_are_errors(payload: bytes, reason: str) -> None:
    [event] = paxcounter.Decoder(paxcounter.Options.model_validate({})).decode(TOPIC, payload)
    assert isinstance(event, DecodeError) and event.reason == reason


def test_counts_are_declared_non_personal_device_counts() -> None:
    cat = paxcounter.DRIVER.catalogue_for({})
    assert cat.personal_fields == ()
    assert {f.key for f in cat.public_fields} == {"wifi_devices", "ble_devices"}
    assert all(f.unit == "{devices}" and f.observation_type is ObservationType.COUNT
               for f in cat.fields)  # fmt: skip


def test_simulated_report_decodes() -> None:
    [(topic, payload)] = paxcounter.simulate(
        random.Random(1), 1_741_946_400.0, "paxcounter/+/count"
    )
    assert topic == "paxcounter/pax-1/count"
    [event] = paxcounter.Decoder(paxcounter.Options.model_validate({})).decode(topic, payload)
    assert isinstance(event, Decoded) and set(event.values) == {"wifi_devices", "ble_devices"}
